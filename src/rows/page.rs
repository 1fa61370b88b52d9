//! A page of dump rows, stored compactly.
//!
//! Every cell of a data page is an SQL literal (text), so a page is one string arena plus
//! cell boundaries: no allocation per cell, and a page takes about as much memory as it
//! weighed on the wire. It deserializes straight from D1's `/raw` result
//! (`{"columns": [...], "rows": [[...], ...]}`) without building JSON values.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Text is stored in blocks of this size, so a growing page never copies what it holds.
/// Below the allocator's mmap threshold (`cli::tune_allocator`): the blocks of a written
/// page are reused for the next one instead of being unmapped and faulted in again.
const BLOCK: usize = 192 * 1024;

/// Rows of literal cells.
#[derive(Debug, Clone, Default)]
pub struct Page {
    width: usize,
    /// Blocks of cell text; a cell never spans two blocks.
    blocks: Vec<String>,
    /// Index of the first cell of each block.
    block_first: Vec<u32>,
    /// End offset of each cell within its block, row-major (4 bytes per cell).
    ends: Vec<u32>,
    bytes: usize,
    /// Cells not known to be literals written into a dump as they are (see
    /// [`Page::push_cell`]); 0 lets the dump write every row without looking at a cell.
    not_plain: usize,
}

/// Pages are equal when they hold the same cells the same way; whether a pusher classified
/// them (`not_plain`) is not part of the content.
impl PartialEq for Page {
    fn eq(&self, other: &Page) -> bool {
        self.width == other.width
            && self.blocks == other.blocks
            && self.block_first == other.block_first
            && self.ends == other.ends
            && self.bytes == other.bytes
    }
}

impl Eq for Page {}

impl Page {
    pub fn new(width: usize) -> Page {
        Page {
            width,
            ..Page::default()
        }
    }

    /// Append one cell; rows fill left to right. The cell counts as not plain.
    pub fn push(&mut self, cell: &str) {
        self.push_cell(cell, false);
    }

    /// Append one cell; `plain` says the caller checked it is one SQL literal that a dump
    /// writes exactly as it is (`sqltext::cell::is_plain`).
    pub fn push_cell(&mut self, cell: &str, plain: bool) {
        self.not_plain += usize::from(!plain);
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= cell.len());
        if !fits {
            self.blocks
                .push(String::with_capacity(BLOCK.max(cell.len())));
            self.block_first.push(self.ends.len() as u32);
        }
        let block = self.blocks.last_mut().expect("a block was just ensured");
        block.push_str(cell);
        self.ends.push(block.len() as u32);
        self.bytes += cell.len();
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Reserve room for `cells` more cells.
    pub fn reserve_cells(&mut self, cells: usize) {
        self.ends.reserve_exact(cells);
    }

    pub fn set_width(&mut self, width: usize) {
        self.width = width;
    }

    /// Whether every cell was pushed as plain.
    pub fn all_plain(&self) -> bool {
        self.not_plain == 0
    }

    /// Number of cells pushed.
    pub fn len_cells(&self) -> usize {
        self.ends.len()
    }

    /// Number of complete rows.
    pub fn len(&self) -> usize {
        self.ends.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of cell text plus JSON framing (what the page weighed on the wire).
    pub fn bytes(&self) -> usize {
        self.bytes + 3 * self.ends.len()
    }

    /// One cell.
    pub fn cell(&self, row: usize, col: usize) -> &str {
        let i = row * self.width + col;
        let b = self
            .block_first
            .partition_point(|&first| first as usize <= i)
            - 1;
        let start = if i == self.block_first[b] as usize {
            0
        } else {
            self.ends[i - 1] as usize
        };
        &self.blocks[b][start..self.ends[i] as usize]
    }

    /// All cells of one row.
    pub fn row(&self, row: usize) -> Vec<&str> {
        self.cells(row).collect()
    }

    /// The cells of one row, in order (one block lookup for the row, not one per cell).
    pub fn cells(&self, row: usize) -> impl Iterator<Item = &str> + '_ {
        let first = row * self.width;
        let mut b = self
            .block_first
            .partition_point(|&f| f as usize <= first)
            .saturating_sub(1);
        (first..first + self.width).map(move |i| {
            while self
                .block_first
                .get(b + 1)
                .is_some_and(|&f| f as usize <= i)
            {
                b += 1;
            }
            let start = if i == self.block_first[b] as usize {
                0
            } else {
                self.ends[i - 1] as usize
            };
            &self.blocks[b][start..self.ends[i] as usize]
        })
    }

    /// Check that the cells form whole rows of the expected width.
    pub fn check(&self, width: usize) -> Result<(), String> {
        if self.width != width {
            return Err(format!("expected {width} columns, got {}", self.width));
        }
        if self.width > 0 && !self.ends.len().is_multiple_of(self.width) {
            return Err("a row has fewer cells than columns".into());
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Page {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PageVisitor)
    }
}

struct PageVisitor;

impl<'de> Visitor<'de> for PageVisitor {
    type Value = Page;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a D1 raw result with columns and rows")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        let mut columns: Option<usize> = None;
        let mut page = Page::default();
        let mut rows_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "columns" => {
                    let cols: Vec<String> = map.next_value()?;
                    columns = Some(cols.len());
                }
                "rows" => {
                    map.next_value_seed(RowsSeed(&mut page))?;
                    rows_seen = true;
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        // Rows may arrive before columns; the width comes from either.
        let width = columns
            .or(if rows_seen { Some(page.width) } else { None })
            .unwrap_or(0);
        if page.width != 0 && page.width != width {
            return Err(de::Error::custom(format!(
                "rows have {} cells but there are {width} columns",
                page.width
            )));
        }
        page.width = width;
        Ok(page)
    }
}

struct RowsSeed<'a>(&'a mut Page);

impl<'de> de::DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("rows of SQL literals")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let page = self.0;
        let mut first = true;
        loop {
            let before = page.ends.len();
            let Some(()) = seq.next_element_seed(RowSeed(page))? else {
                break;
            };
            let n = page.ends.len() - before;
            if first {
                page.width = n;
                first = false;
            } else if n != page.width {
                return Err(de::Error::custom(format!(
                    "row of {n} cells after rows of {}",
                    page.width
                )));
            }
        }
        Ok(())
    }
}

struct RowSeed<'a>(&'a mut Page);

impl<'de> de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row of SQL literals (strings)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(CellSeed(self.0))?.is_some() {}
        Ok(())
    }
}

struct CellSeed<'a>(&'a mut Page);

impl<'de> de::DeserializeSeed<'de> for CellSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an SQL literal string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raw_results_into_an_arena() {
        let p: Page = serde_json::from_str(
            r#"{"columns":["a","b"],"rows":[["1","'x\"y\n'"],["NULL","X'00'"]]}"#,
        )
        .unwrap();
        assert_eq!(p.width(), 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.row(0), vec!["1", "'x\"y\n'"]);
        assert_eq!(p.cell(1, 1), "X'00'");
    }

    #[test]
    fn cells_never_span_blocks() {
        let mut p = Page::new(2);
        let big = "x".repeat(BLOCK + 10);
        for i in 0..1000 {
            p.push(&format!("'{i}'"));
            p.push(if i == 500 { &big } else { "NULL" });
        }
        assert_eq!(p.len(), 1000);
        assert_eq!(p.cell(500, 1), big);
        assert_eq!(p.row(999), vec!["'999'", "NULL"]);
    }

    #[test]
    fn empty_and_missing_rows() {
        let p: Page = serde_json::from_str(r#"{"columns":["a"],"rows":[]}"#).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.width(), 1);
        let p: Page = serde_json::from_str(r#"{"columns":["a","b"]}"#).unwrap();
        assert_eq!((p.len(), p.width()), (0, 2));
    }

    #[test]
    fn rejects_non_literals_and_ragged_rows() {
        assert!(serde_json::from_str::<Page>(r#"{"columns":["a"],"rows":[[1]]}"#).is_err());
        assert!(
            serde_json::from_str::<Page>(r#"{"columns":["a","b"],"rows":[["1","2"],["3"]]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Page>(r#"{"columns":["a"],"rows":[["1","2"]]}"#).is_err());
    }
}
