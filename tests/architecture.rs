//! Architecture guard: **layers run one way**.
//!
//! The command layer (`src/cli/`) calls the engine; the engine never imports upward and never
//! names a command-line input or an exit code. This test reads the source text of `src/` and
//! `fake-d1/src/` (it does not compile or load them) and checks:
//!
//! 1. every reference from one module to another of the same crate (`use crate::…`, `use
//!    super::…`, `use self::…`, groups `use crate::{a, b::{c}}`, inline `crate::a::f()`,
//!    `super::super::x`, and bare paths into a child declared with `mod x;`) goes to the
//!    file's own top-level tree or to a strictly lower layer of the tables below;
//! 2. every top-level module appears in its crate's table, and every table entry exists;
//! 3. the file-level module graph has no cycle, in either crate;
//! 4. `main.rs` of d1-backup uses only `cli`;
//! 5. no file of `src/` outside `src/cli/` names an input in backticks inside a string
//!    literal (`` `force` ``), or uses `ExitCode`, `std::process::exit` or `exit(1|2|130|143)`.
//!
//! Comments, doc comments and literals are stripped before paths are read, and so is every
//! item under `#[cfg(test)]` (tests may reach anywhere). A path names the *file* it reaches:
//! the longest prefix that is a module (`crate::d1::stream::PageDecoder` → `d1::stream`); a
//! path to an item of `lib.rs` (`crate::Cancelled`) names the crate root, which sits on top
//! (numbered one above the last layer: layer 10 for `src/`). A bare path into a child
//! (`pub use page::Page;` next to `mod page;`) is a reference like `self::page::Page`, so a
//! parent that uses its child while the child uses the parent is a cycle.
//!
//! How to read a failure — one line per violation:
//!
//! * `src/d1/mod.rs:28: d1 imports cli (layer 5 -> layer 9)`: line 28 reaches a module
//!   that is not strictly lower. Move the item down, pass the value in from above, or, if the
//!   design really changed, edit the table.
//! * `cycle: dump -> dump::sql -> dump  [src/dump/mod.rs:35, src/dump/sql.rs:19]`: these
//!   files reach each other; the bracket gives the line of each step.
//! * `src/store/s3.rs:40: engine module names input `force``: the engine tells the user
//!   about a flag; return a typed error and let `src/cli/` word it.
//! * `src/extra.rs: unlisted module `extra` (not in the layer table)`: give it a layer;
//!   `layer table: `rows` (layer 2) has no module in src/`: drop or rename the entry.
//! * `src/main.rs:4: main imports app (the binary may use only cli)`.
//!
//! The `self_test` module at the bottom runs the checker on small in-memory crates, so a
//! green run means "no violations", not "the checker saw nothing".

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

// ─── The layer tables ────────────────────────────────────────────────────────────────────────

/// One crate's rules.
struct Rules {
    /// Where its sources live, relative to the workspace root.
    src_dir: &'static str,
    /// The library's name as its binary spells it (`d1_backup::cli::…`).
    lib_name: &'static str,
    /// Lowest layer first; each layer lists top-level module names. `lib.rs` sits on top.
    layers: &'static [&'static [&'static str]],
    /// The only top-level modules `main.rs` may name (`None`: any).
    binary_may_use: Option<&'static [&'static str]>,
}

const D1_BACKUP: Rules = Rules {
    src_dir: "src",
    lib_name: "d1_backup",
    layers: &[
        &["util"], // log, secrets, scratch, progress, workflow-command escaping
        &["sqltext", "rows", "keys"],
        &["manifest", "encrypt", "sign"],
        &["retention", "shard"],
        &["d1", "store"],
        &["source"],
        &["dump"],
        &["write", "read", "catalog"],
        &["cli"],
    ],
    binary_may_use: Some(&["cli"]),
};

const FAKE_D1: Rules = Rules {
    src_dir: "fake-d1/src",
    lib_name: "fake_d1",
    layers: &[
        &["values", "split", "util", "conn", "options", "log"],
        &["dump", "sql", "reply", "routes"],
        &["faults", "jobs", "links", "budget", "replay"],
        &["state"],
        &["export", "import", "signed"],
        &["api"],
        &["server"],
    ],
    binary_may_use: None,
};

/// Exit codes the engine must not spell out.
const EXIT_CODES: &[&str] = &["1", "2", "130", "143"];

// ─── The real checks ─────────────────────────────────────────────────────────────────────────

#[test]
fn d1_backup_layers_run_one_way() {
    let files = read_sources(D1_BACKUP.src_dir);
    assert_clean("d1-backup", check_crate(&D1_BACKUP, &files));
}

#[test]
fn fake_d1_layers_run_one_way() {
    let files = read_sources(FAKE_D1.src_dir);
    assert_clean("fake-d1", check_crate(&FAKE_D1, &files));
}

#[test]
fn engine_never_names_an_input_or_an_exit_code() {
    let files = read_sources(D1_BACKUP.src_dir);
    let names = input_names();
    assert!(!names.is_empty(), "INPUTS is empty: nothing to look for");
    assert_clean(
        "d1-backup engine",
        engine_violations(&D1_BACKUP, &files, &names),
    );
}

/// The one thing this test takes from the crate: the names of the command-line inputs.
fn input_names() -> Vec<&'static str> {
    d1_backup::cli::inputs::INPUTS
        .iter()
        .map(|input| input.name)
        .collect()
}

fn assert_clean(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} architecture violation(s) (see the comment at the top of \
         tests/architecture.rs for how to read them):\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

/// A source file: its path under the crate's source directory (`d1/mod.rs`) and its text.
struct SourceFile {
    rel: String,
    text: String,
}

fn read_sources(src_dir: &str) -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(src_dir);
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    assert!(!files.is_empty(), "no .rs files under {}", root.display());
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let rel = path.strip_prefix(root).expect("under root");
            let rel: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.push(SourceFile {
                rel: rel.join("/"),
                text,
            });
        }
    }
}

// ─── Lexer: tokens without comments; literals kept apart ─────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ident,
    /// A string literal of any flavour; `text` is its raw content.
    Str,
    Num,
    /// `::`
    PathSep,
    Punct,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    line: usize,
}

impl Token {
    /// An identifier, number or punctuation spelled `s` (never a string literal's content).
    fn is(&self, s: &str) -> bool {
        self.kind != Kind::Str && self.text == s
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits Rust source into tokens. Comments (nested block comments and doc comments too) and
/// char literals and lifetimes vanish; string literals (plain, byte, C, raw) become one `Str`.
fn lex(src: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        out: Vec::new(),
    };
    while lexer.pos < lexer.chars.len() {
        lexer.step();
    }
    lexer.out
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> char {
        self.chars.get(self.pos + ahead).copied().unwrap_or('\0')
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn bump(&mut self) -> char {
        let c = self.peek(0);
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        c
    }

    fn push(&mut self, kind: Kind, text: String, line: usize) {
        self.out.push(Token { kind, text, line });
    }

    fn step(&mut self) {
        let (c, next) = (self.peek(0), self.peek(1));
        if c.is_whitespace() {
            self.bump();
        } else if c == '/' && next == '/' {
            self.line_comment();
        } else if c == '/' && next == '*' {
            self.block_comment();
        } else if let Some(letters) = self.raw_string_prefix() {
            self.raw_string(letters);
        } else if matches!(c, 'b' | 'c') && next == '"' {
            self.pos += 1;
            self.string();
        } else if c == 'b' && next == '\'' {
            self.pos += 1;
            self.quote();
        } else if c == 'r' && next == '#' && is_ident_start(self.peek(2)) {
            self.pos += 2; // raw identifier `r#type`
            self.word(Kind::Ident);
        } else if c == '"' {
            self.string();
        } else if c == '\'' {
            self.quote();
        } else if is_ident_start(c) {
            self.word(Kind::Ident);
        } else if c.is_ascii_digit() {
            self.word(Kind::Num);
        } else if c == ':' && next == ':' {
            self.pos += 2;
            self.push(Kind::PathSep, "::".to_string(), self.line);
        } else {
            let line = self.line;
            let c = self.bump();
            self.push(Kind::Punct, c.to_string(), line);
        }
    }

    fn line_comment(&mut self) {
        while !self.at_end() && self.peek(0) != '\n' {
            self.pos += 1;
        }
    }

    fn block_comment(&mut self) {
        let mut depth = 0;
        while !self.at_end() {
            if self.peek(0) == '/' && self.peek(1) == '*' {
                depth += 1;
                self.pos += 2;
            } else if self.peek(0) == '*' && self.peek(1) == '/' {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    /// `r"`, `r#"`, `br##"`, `cr"`…: the number of prefix letters, if a raw string starts here.
    fn raw_string_prefix(&self) -> Option<usize> {
        let letters = match (self.peek(0), self.peek(1)) {
            ('r', _) => 1,
            ('b' | 'c', 'r') => 2,
            _ => return None,
        };
        let mut k = letters;
        while self.peek(k) == '#' {
            k += 1;
        }
        (self.peek(k) == '"').then_some(letters)
    }

    fn raw_string(&mut self, letters: usize) {
        let line = self.line;
        self.pos += letters;
        let mut hashes = 0;
        while self.peek(0) == '#' {
            hashes += 1;
            self.pos += 1;
        }
        self.pos += 1; // the opening quote
        let mut text = String::new();
        while !self.at_end() {
            if self.peek(0) == '"' && (1..=hashes).all(|k| self.peek(k) == '#') {
                self.pos += 1 + hashes;
                break;
            }
            text.push(self.bump());
        }
        self.push(Kind::Str, text, line);
    }

    fn string(&mut self) {
        let line = self.line;
        self.pos += 1; // the opening quote
        let mut text = String::new();
        while !self.at_end() {
            match self.bump() {
                '"' => break,
                '\\' => {
                    text.push('\\');
                    text.push(self.bump());
                }
                c => text.push(c),
            }
        }
        self.push(Kind::Str, text, line);
    }

    /// A char literal (`'a'`, `'\''`, `'\u{1F600}'`) or a lifetime (`'a`); both vanish.
    fn quote(&mut self) {
        if self.peek(1) == '\\' {
            self.pos += 3; // quote, backslash, escaped char
            while !self.at_end() && self.peek(0) != '\'' {
                self.pos += 1;
            }
            self.pos += 1;
        } else if self.peek(2) == '\'' {
            self.bump();
            self.bump();
            self.bump();
        } else {
            self.pos += 1;
            while is_ident_continue(self.peek(0)) {
                self.pos += 1;
            }
        }
    }

    fn word(&mut self, kind: Kind) {
        let line = self.line;
        let start = self.pos;
        while is_ident_continue(self.peek(0)) {
            self.pos += 1;
        }
        let text = self.chars[start..self.pos].iter().collect();
        self.push(kind, text, line);
    }
}

// ─── Test-only code ──────────────────────────────────────────────────────────────────────────

const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];

/// Drops every item under `#[cfg(test)]` (a `mod tests { … }` body, a helper fn, a `use`).
/// Returns the remaining tokens and the names of test-only child files (`#[cfg(test)] mod x;`).
fn strip_test_items(tokens: &[Token]) -> (Vec<Token>, Vec<String>) {
    let mut live = Vec::new();
    let mut test_children = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if is_cfg_test(tokens, i) {
            let item = skip_attributes(tokens, i);
            test_children.extend(external_mod_name(tokens, item));
            i = item_end(tokens, item);
        } else {
            live.push(tokens[i].clone());
            i += 1;
        }
    }
    (live, test_children)
}

fn is_cfg_test(tokens: &[Token], i: usize) -> bool {
    CFG_TEST
        .iter()
        .enumerate()
        .all(|(k, s)| tokens.get(i + k).is_some_and(|t| t.is(s)))
}

/// The index after the run of `#[…]` attributes starting at `i`.
fn skip_attributes(tokens: &[Token], mut i: usize) -> usize {
    while tokens.get(i).is_some_and(|t| t.is("#")) && tokens.get(i + 1).is_some_and(|t| t.is("[")) {
        i = close_of(tokens, i + 1);
    }
    i
}

/// The index after the bracket group opened at `open`.
fn close_of(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        if t.is("(") || t.is("[") || t.is("{") {
            depth += 1;
        } else if t.is(")") || t.is("]") || t.is("}") {
            depth -= 1;
            if depth == 0 {
                return k + 1;
            }
        }
    }
    tokens.len()
}

/// The index after the item starting at `start`: after its `;` or its outermost `{ … }`.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut i = start;
    while let Some(t) = tokens.get(i) {
        if t.is(";") {
            return i + 1;
        }
        if t.is("{") {
            return close_of(tokens, i);
        }
        if t.is("(") || t.is("[") {
            i = close_of(tokens, i);
        } else {
            i += 1;
        }
    }
    tokens.len()
}

/// `mod x;` (optionally `pub`, `pub(crate)`) starting at `i`: the name `x`.
fn external_mod_name(tokens: &[Token], mut i: usize) -> Option<String> {
    if tokens.get(i)?.is("pub") {
        i += 1;
        if tokens.get(i)?.is("(") {
            i = close_of(tokens, i);
        }
    }
    let (kw, name, end) = (tokens.get(i)?, tokens.get(i + 1)?, tokens.get(i + 2)?);
    (kw.is("mod") && name.kind == Kind::Ident && end.is(";")).then(|| name.text.clone())
}

// ─── Files, modules and references ───────────────────────────────────────────────────────────

/// A module path from the crate root; the root itself is empty.
type ModPath = Vec<String>;

fn mod_name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Unit {
    /// A file of the library, with its module path.
    Lib(ModPath),
    /// `main.rs` or `bin/*.rs`.
    Binary,
}

/// `lib.rs` → root, `d1/mod.rs` → `d1`, `d1/stream.rs` → `d1::stream`, `main.rs` → binary.
fn unit_of(rel: &str) -> Unit {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    if stem == "main" || stem.starts_with("bin/") {
        return Unit::Binary;
    }
    if stem == "lib" {
        return Unit::Lib(Vec::new());
    }
    let mut path: ModPath = stem.split('/').map(str::to_string).collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    Unit::Lib(path)
}

/// A file ready to scan: test-only items removed, test-only files left out.
struct Parsed {
    display: String,
    unit: Unit,
    live: Vec<Token>,
}

fn parse_files(rules: &Rules, files: &[SourceFile]) -> Vec<Parsed> {
    let mut parsed = Vec::new();
    let mut test_only: Vec<ModPath> = Vec::new();
    for file in files {
        let (live, test_children) = strip_test_items(&lex(&file.text));
        let unit = unit_of(&file.rel);
        if let Unit::Lib(here) = &unit {
            test_only.extend(test_children.into_iter().map(|c| child(here, &c)));
        }
        let display = format!("{}/{}", rules.src_dir, file.rel);
        parsed.push(Parsed {
            display,
            unit,
            live,
        });
    }
    parsed.retain(|p| match &p.unit {
        Unit::Lib(path) => !test_only.iter().any(|t| path.starts_with(t)),
        Unit::Binary => true,
    });
    parsed
}

fn child(parent: &[String], name: &str) -> ModPath {
    let mut path = parent.to_vec();
    path.push(name.to_string());
    path
}

/// A path as written, with the module it was written in (the file's, plus inline `mod`s).
struct RawPath {
    line: usize,
    scope: ModPath,
    segs: Vec<String>,
}

/// Children declared at file scope with `mod x;`.
fn declared_children(tokens: &[Token]) -> BTreeSet<String> {
    let mut depth = 0usize;
    let mut names = BTreeSet::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.is("{") {
            depth += 1;
        } else if t.is("}") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && t.is("mod") {
            names.extend(external_mod_name(tokens, i));
        }
    }
    names
}

/// Every path that starts with `crate`, `super`, `self`, or (outside inline modules) one of
/// `bare` — the file's children, or the library's name when scanning a binary.
fn scan_paths(tokens: &[Token], here: &[String], bare: &BTreeSet<String>) -> Vec<RawPath> {
    let mut found = Vec::new();
    let mut scopes: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].is("{") {
            scopes.push(inline_mod_name(tokens, i));
        } else if tokens[i].is("}") {
            scopes.pop();
        } else if starts_path(tokens, i, &scopes, bare) {
            let scope: ModPath = here
                .iter()
                .cloned()
                .chain(scopes.iter().flatten().cloned())
                .collect();
            let mut paths = Vec::new();
            i = parse_tree(tokens, i, Vec::new(), &mut paths);
            let raw = paths.into_iter().map(|(line, segs)| RawPath {
                line,
                scope: scope.clone(),
                segs,
            });
            found.extend(raw);
            continue;
        }
        i += 1;
    }
    found
}

/// For the `{` at `i`: the name `x` if it opens `mod x { … }`.
fn inline_mod_name(tokens: &[Token], i: usize) -> Option<String> {
    let (kw, name) = (tokens.get(i.checked_sub(2)?)?, tokens.get(i - 1)?);
    (kw.is("mod") && name.kind == Kind::Ident).then(|| name.text.clone())
}

fn starts_path(
    tokens: &[Token],
    i: usize,
    scopes: &[Option<String>],
    bare: &BTreeSet<String>,
) -> bool {
    let t = &tokens[i];
    let before = |k: usize| i.checked_sub(k).and_then(|j| tokens.get(j));
    let followed = tokens.get(i + 1).is_some_and(|n| n.kind == Kind::PathSep);
    let continues = before(1).is_some_and(|p| p.kind == Kind::PathSep || p.is("."));
    // `pub(in crate::a)` restricts visibility; it is not a use.
    let visibility = before(1).is_some_and(|p| p.is("in")) && before(2).is_some_and(|p| p.is("("));
    let outside_inline_mods = scopes.iter().all(Option::is_none);
    let anchored = matches!(t.text.as_str(), "crate" | "super" | "self");
    let is_start = anchored || (outside_inline_mods && bare.contains(&t.text));
    t.kind == Kind::Ident && followed && !continues && !visibility && is_start
}

/// Reads a path or `use` tree at `i` (`a::b::{c, d::{e}, f as g}`, `a::*`); pushes each
/// leaf as (line, segments). Returns the index after it.
fn parse_tree(
    tokens: &[Token],
    mut i: usize,
    mut segs: Vec<String>,
    out: &mut Vec<(usize, Vec<String>)>,
) -> usize {
    let mut line = tokens.get(i).map_or(0, |t| t.line);
    while let Some(t) = tokens.get(i) {
        if t.kind == Kind::Ident && !t.is("as") {
            segs.push(t.text.clone());
            line = t.line;
            i += 1;
        } else if t.is("{") {
            return parse_group(tokens, i, &segs, out);
        } else if t.is("*") {
            i += 1;
            break;
        } else {
            break;
        }
        if !tokens.get(i).is_some_and(|t| t.kind == Kind::PathSep) {
            break;
        }
        i += 1;
    }
    out.push((line, segs));
    if tokens.get(i).is_some_and(|t| t.is("as")) {
        i += 2; // `as name`
    }
    i
}

fn parse_group(
    tokens: &[Token],
    open: usize,
    prefix: &[String],
    out: &mut Vec<(usize, Vec<String>)>,
) -> usize {
    let mut i = open + 1;
    while let Some(t) = tokens.get(i) {
        if t.is("}") {
            return i + 1;
        }
        if t.is(",") {
            i += 1;
            continue;
        }
        let next = parse_tree(tokens, i, prefix.to_vec(), out);
        i = next.max(i + 1);
    }
    i
}

/// Applies `crate`, `super` and `self` to a path written in `scope`. `None` if `super` climbs
/// above the root.
fn normalize(scope: &[String], segs: &[String]) -> Option<ModPath> {
    let mut path = scope.to_vec();
    for seg in segs {
        match seg.as_str() {
            "crate" => path.clear(),
            "super" => {
                path.pop()?;
            }
            "self" => {}
            _ => path.push(seg.clone()),
        }
    }
    Some(path)
}

/// The file a path reaches: its longest prefix that is a known module.
fn resolve(path: &[String], known: &BTreeSet<ModPath>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
        .unwrap_or_default()
}

/// One reference from a file to another module of its crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ref {
    file: String,
    line: usize,
    from: ModPath,
    to: ModPath,
}

/// The library's module graph, and what its binaries name in it.
struct Crate {
    /// Every library module and the file that holds it.
    modules: BTreeMap<ModPath, String>,
    refs: BTreeSet<Ref>,
    /// References from binaries; `from` is empty.
    binary_refs: BTreeSet<Ref>,
}

impl Crate {
    fn build(rules: &Rules, parsed: &[Parsed]) -> Crate {
        let mut modules = BTreeMap::new();
        for p in parsed {
            if let Unit::Lib(path) = &p.unit {
                modules.insert(path.clone(), p.display.clone());
            }
        }
        let mut known: BTreeSet<ModPath> = modules.keys().cloned().collect();
        known.insert(Vec::new());
        let mut krate = Crate {
            modules,
            refs: BTreeSet::new(),
            binary_refs: BTreeSet::new(),
        };
        for p in parsed {
            match &p.unit {
                Unit::Lib(here) => krate.refs.extend(lib_refs(p, here, &known)),
                Unit::Binary => krate
                    .binary_refs
                    .extend(binary_refs(p, rules.lib_name, &known)),
            }
        }
        krate
    }

    /// `from → {to}`, self-references left out.
    fn graph(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for r in &self.refs {
            graph
                .entry(r.from.clone())
                .or_default()
                .insert(r.to.clone());
        }
        graph
    }

    /// Where `from` first reaches `to`, as `file:line`.
    fn site(&self, from: &ModPath, to: &ModPath) -> String {
        self.refs
            .iter()
            .find(|r| &r.from == from && &r.to == to)
            .map_or_else(String::new, |r| format!("{}:{}", r.file, r.line))
    }
}

fn lib_refs(p: &Parsed, here: &ModPath, known: &BTreeSet<ModPath>) -> Vec<Ref> {
    let children = declared_children(&p.live);
    scan_paths(&p.live, here, &children)
        .into_iter()
        .filter_map(|raw| {
            let to = resolve(&normalize(&raw.scope, &raw.segs)?, known);
            let line = raw.line;
            (&to != here).then(|| Ref {
                file: p.display.clone(),
                line,
                from: here.clone(),
                to,
            })
        })
        .collect()
}

fn binary_refs(p: &Parsed, lib_name: &str, known: &BTreeSet<ModPath>) -> Vec<Ref> {
    let bare = BTreeSet::from([lib_name.to_string()]);
    scan_paths(&p.live, &[], &bare)
        .into_iter()
        .filter(|raw| raw.segs.first().is_some_and(|s| s == lib_name))
        .filter_map(|raw| {
            let to = resolve(&normalize(&[], &raw.segs[1..])?, known);
            Some(Ref {
                file: p.display.clone(),
                line: raw.line,
                from: Vec::new(),
                to,
            })
        })
        .collect()
}

// ─── The rules ───────────────────────────────────────────────────────────────────────────────

/// Every problem with one crate's module structure, one message per line.
fn check_crate(rules: &Rules, files: &[SourceFile]) -> Vec<String> {
    let krate = Crate::build(rules, &parse_files(rules, files));
    let mut problems = table_problems(rules, &krate);
    problems.extend(layer_violations(rules, &krate));
    problems.extend(cycles(&krate));
    problems.extend(binary_violations(rules, &krate));
    problems
}

/// 1-based layer of a top-level module; the crate root sits above every layer.
fn layer_of(rules: &Rules, module: &[String]) -> Option<usize> {
    let Some(top) = module.first() else {
        return Some(rules.layers.len() + 1);
    };
    rules
        .layers
        .iter()
        .position(|layer| layer.contains(&top.as_str()))
        .map(|i| i + 1)
}

/// Top-level modules missing from the table, and table entries with no module.
fn table_problems(rules: &Rules, krate: &Crate) -> Vec<String> {
    let mut tops: BTreeMap<&str, &str> = BTreeMap::new();
    for (path, file) in &krate.modules {
        if let Some(top) = path.first() {
            let first = tops.entry(top.as_str()).or_insert(file.as_str());
            if path.len() == 1 {
                *first = file.as_str(); // prefer `x.rs` / `x/mod.rs` itself
            }
        }
    }
    let mut problems: Vec<String> = tops
        .iter()
        .filter(|(top, _)| layer_of(rules, &[top.to_string()]).is_none())
        .map(|(top, file)| format!("{file}: unlisted module `{top}` (not in the layer table)"))
        .collect();
    for (n, layer) in rules.layers.iter().enumerate() {
        for name in layer.iter().filter(|name| !tops.contains_key(*name)) {
            problems.push(format!(
                "layer table: `{name}` (layer {}) has no module in {}/",
                n + 1,
                rules.src_dir
            ));
        }
    }
    problems
}

/// References that leave the file's own tree for the same or a higher layer.
fn layer_violations(rules: &Rules, krate: &Crate) -> Vec<String> {
    let mut problems = Vec::new();
    for r in &krate.refs {
        if r.from.is_empty() || r.to.first() == r.from.first() {
            continue; // the root may reach anything; a tree may reach itself (cycles aside)
        }
        let (Some(from), Some(to)) = (layer_of(rules, &r.from), layer_of(rules, &r.to)) else {
            continue; // an unlisted module, reported once by `table_problems`
        };
        if to >= from {
            problems.push(format!(
                "{}:{}: {} imports {} (layer {from} -> layer {to})",
                r.file,
                r.line,
                mod_name(&r.from),
                mod_name(&r.to)
            ));
        }
    }
    problems
}

/// What `main.rs` names beyond the modules it may use.
fn binary_violations(rules: &Rules, krate: &Crate) -> Vec<String> {
    let Some(allowed) = rules.binary_may_use else {
        return Vec::new();
    };
    krate
        .binary_refs
        .iter()
        .filter(|r| {
            !r.to
                .first()
                .is_some_and(|top| allowed.contains(&top.as_str()))
        })
        .map(|r| {
            let to = mod_name(&r.to);
            format!(
                "{}:{}: main imports {to} (the binary may use only {})",
                r.file,
                r.line,
                allowed.join(", ")
            )
        })
        .collect()
}

/// One line per distinct cycle: for every module on a cycle, the shortest cycle through it,
/// with the line of each step.
fn cycles(krate: &Crate) -> Vec<String> {
    let graph = krate.graph();
    let found: BTreeSet<Vec<ModPath>> = graph
        .keys()
        .filter_map(|start| shortest_cycle(&graph, start))
        .map(|cycle| rotate_to_smallest(&cycle))
        .collect();
    found
        .iter()
        .map(|cycle| describe_cycle(krate, cycle))
        .collect()
}

/// `start -> … -> start`, as few steps as possible; `None` if `start` is on no cycle.
fn shortest_cycle(
    graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    start: &ModPath,
) -> Option<Vec<ModPath>> {
    let mut parent: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                let mut path = vec![start.clone(), node.clone()];
                while path.last() != Some(start) {
                    path.push(parent[path.last().expect("non-empty")].clone());
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The same cycle, starting (and ending) at its smallest module, so each is reported once.
fn rotate_to_smallest(cycle: &[ModPath]) -> Vec<ModPath> {
    let ring = &cycle[..cycle.len() - 1];
    let first = (0..ring.len()).min_by_key(|&i| &ring[i]).unwrap_or(0);
    let mut rotated: Vec<ModPath> = ring[first..]
        .iter()
        .chain(&ring[..first])
        .cloned()
        .collect();
    rotated.push(rotated[0].clone());
    rotated
}

fn describe_cycle(krate: &Crate, cycle: &[ModPath]) -> String {
    let names: Vec<String> = cycle.iter().map(|m| mod_name(m)).collect();
    let sites: Vec<String> = cycle.windows(2).map(|w| krate.site(&w[0], &w[1])).collect();
    format!("cycle: {}  [{}]", names.join(" -> "), sites.join(", "))
}

// ─── The engine never names an input or an exit code ─────────────────────────────────────────

/// Files of the library outside `cli/`: string literals that name an input in backticks, and
/// any `ExitCode`, `process::exit` or literal `exit(1|2|130|143)`.
fn engine_violations(rules: &Rules, files: &[SourceFile], inputs: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for p in parse_files(rules, files) {
        let Unit::Lib(path) = &p.unit else { continue };
        if path.first().is_some_and(|top| top == "cli") {
            continue;
        }
        problems.extend(named_inputs(&p, inputs));
        problems.extend(exit_codes(&p));
    }
    problems
}

fn named_inputs(p: &Parsed, inputs: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for t in p.live.iter().filter(|t| t.kind == Kind::Str) {
        for name in inputs {
            for (at, _) in t.text.match_indices(&format!("`{name}`")) {
                let line = t.line + t.text[..at].matches('\n').count();
                problems.push(format!(
                    "{}:{line}: engine module names input `{name}`",
                    p.display
                ));
            }
        }
    }
    problems
}

fn exit_codes(p: &Parsed) -> Vec<String> {
    let tokens = &p.live;
    let at = |i: usize, s: &str| tokens.get(i).is_some_and(|t| t.is(s));
    let mut problems = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let what = if t.is("ExitCode") {
            "ExitCode".to_string()
        } else if t.is("process") && at(i + 1, "::") && at(i + 2, "exit") {
            "std::process::exit".to_string()
        } else if t.is("exit")
            && at(i + 1, "(")
            && at(i + 3, ")")
            && !at(i.wrapping_sub(2), "process")
        {
            match tokens
                .get(i + 2)
                .filter(|n| EXIT_CODES.iter().any(|c| n.is(c)))
            {
                Some(code) => format!("exit code `exit({})`", code.text),
                None => continue,
            }
        } else {
            continue;
        };
        problems.push(format!(
            "{}:{}: engine module uses {what}",
            p.display, t.line
        ));
    }
    problems
}

// ─── Self-tests: the checker on small in-memory crates ───────────────────────────────────────

mod self_test {
    use super::*;

    /// A toy crate: `low` < `mid`, `side` < `high`; its binary may use `high` only. Only
    /// `mid::b` reaches `low`, so a test that makes `low` reach up starts no cycle.
    const TOY: Rules = Rules {
        src_dir: "src",
        lib_name: "toy",
        layers: &[&["low"], &["mid", "side"], &["high"]],
        binary_may_use: Some(&["high"]),
    };

    const BASE: &[(&str, &str)] = &[
        (
            "lib.rs",
            "pub mod low;\npub mod mid;\npub mod side;\npub mod high;\npub struct Cancelled;\n",
        ),
        ("low.rs", "pub fn f() {}\n"),
        ("mid/mod.rs", "pub mod a;\npub mod b;\n"),
        ("mid/a.rs", "pub struct A;\n"),
        ("mid/b.rs", "use super::a::A;\nuse crate::low::f;\n"),
        ("side.rs", "pub struct S;\n"),
        ("high/mod.rs", "use crate::{mid::a::A, side};\n"),
    ];

    /// The base toy crate with `changes` applied (an empty text removes a file).
    fn toy(changes: &[(&str, &str)]) -> Vec<SourceFile> {
        let mut files: BTreeMap<&str, &str> = BASE.iter().copied().collect();
        for (rel, text) in changes {
            if text.is_empty() {
                files.remove(rel);
            } else {
                files.insert(rel, text);
            }
        }
        files
            .into_iter()
            .map(|(rel, text)| SourceFile {
                rel: rel.to_string(),
                text: text.to_string(),
            })
            .collect()
    }

    fn check(changes: &[(&str, &str)]) -> Vec<String> {
        check_crate(&TOY, &toy(changes))
    }

    /// The modules `from` reaches, by name.
    fn edges_from(changes: &[(&str, &str)], from: &str) -> BTreeSet<String> {
        let files = toy(changes);
        let krate = Crate::build(&TOY, &parse_files(&TOY, &files));
        krate
            .refs
            .iter()
            .filter(|r| mod_name(&r.from) == from)
            .map(|r| mod_name(&r.to))
            .collect()
    }

    #[test]
    fn the_base_toy_crate_is_clean_and_has_edges() {
        assert_eq!(check(&[]), Vec::<String>::new());
        assert_eq!(
            edges_from(&[], "high"),
            BTreeSet::from(["mid::a".into(), "side".into()])
        );
        assert_eq!(
            edges_from(&[], "mid::b"),
            BTreeSet::from(["low".into(), "mid::a".into()])
        );
    }

    #[test]
    fn reports_an_upward_import() {
        let problems = check(&[("low.rs", "use crate::high::Thing;\n")]);
        assert_eq!(
            problems,
            ["src/low.rs:1: low imports high (layer 1 -> layer 3)"]
        );
    }

    #[test]
    fn reports_a_same_layer_import_across_trees() {
        let problems = check(&[("side.rs", "\n\nfn f() { crate::mid::a::g(); }\n")]);
        assert_eq!(
            problems,
            ["src/side.rs:3: side imports mid::a (layer 2 -> layer 2)"]
        );
    }

    #[test]
    fn reports_an_item_of_the_crate_root_as_the_top() {
        let problems = check(&[("low.rs", "fn f() -> crate::Cancelled { todo!() }\n")]);
        assert_eq!(
            problems,
            ["src/low.rs:1: low imports crate (layer 1 -> layer 4)"]
        );
    }

    #[test]
    fn reports_a_cycle_inside_one_tree() {
        let problems = check(&[("mid/a.rs", "fn g() {}\n\nuse crate::mid::b::B;\n")]);
        assert_eq!(
            problems,
            ["cycle: mid::a -> mid::b -> mid::a  [src/mid/a.rs:3, src/mid/b.rs:1]"]
        );
    }

    #[test]
    fn reports_a_cycle_between_a_parent_and_its_child() {
        // The parent re-exports from its child (a bare path into `mod a;`); the child uses an
        // item of the parent. `std::error::Error` is not the child `error`.
        let mid = "pub mod a;\npub mod b;\npub mod error;\npub use a::A;\nfn f(e: &dyn std::error::Error) {}\n";
        let problems = check(&[
            ("mid/mod.rs", mid),
            ("mid/error.rs", "fn e() {}\n"),
            ("mid/a.rs", "use super::Shared;\n"),
        ]);
        assert_eq!(
            problems,
            ["cycle: mid -> mid::a -> mid  [src/mid/mod.rs:4, src/mid/a.rs:1]"]
        );
    }

    #[test]
    fn ignores_paths_inside_strings_and_comments() {
        let low = r####"// use crate::high::A;
/// crate::high::B
/* outer /* nested crate::high::C */
   still comment crate::high::D */
const S: &str = "use crate::high::E; \" crate::high::F";
const R: &str = r#"a " crate::high::G "#;
const B: &[u8] = b"crate::high::H";
const RB: &[u8] = br##"a "# crate::high::I "##;
const Q: char = '"';
const E: char = '\'';
const BR: char = '{';
fn life<'a>(x: &'a str) -> &'a str { x }
use crate::high::Real;
"####;
        let problems = check(&[("low.rs", low)]);
        assert_eq!(
            problems,
            ["src/low.rs:13: low imports high (layer 1 -> layer 3)"]
        );
    }

    #[test]
    fn resolves_every_path_of_a_nested_use_group() {
        let high = "use crate::{mid::{a::{A, self}, b}, low};\nuse crate::{side as s};\n";
        let expected = ["low", "mid::a", "mid::b", "side"].map(String::from);
        assert_eq!(
            edges_from(&[("high/mod.rs", high)], "high"),
            BTreeSet::from(expected)
        );
        let problems = check(&[("low.rs", "use crate::{mid::{a::{A}}, side};\n")]);
        assert_eq!(
            problems,
            [
                "src/low.rs:1: low imports mid::a (layer 1 -> layer 2)",
                "src/low.rs:1: low imports side (layer 1 -> layer 2)",
            ]
        );
    }

    #[test]
    fn resolves_a_path_to_its_longest_module_prefix() {
        let high =
            "fn f() { let _ = crate::mid::a::Deep::<u8>::new(); crate::mid::Shallow::go(); }\n";
        let expected = ["mid", "mid::a"].map(String::from);
        assert_eq!(
            edges_from(&[("high/mod.rs", high)], "high"),
            BTreeSet::from(expected)
        );
    }

    #[test]
    fn ignores_the_body_of_cfg_test_modules() {
        let low = "#[cfg(test)]\nmod tests {\n    use crate::high::H;\n    fn t() { if true { crate::side::s(); } }\n}\nfn after() { crate::high::h(); }\n";
        let mid = "pub mod a;\npub mod b;\n#[cfg(test)]\nmod fixtures;\n";
        let fixtures = "use crate::high::H;\n";
        let problems = check(&[
            ("low.rs", low),
            ("mid/mod.rs", mid),
            ("mid/fixtures.rs", fixtures),
        ]);
        assert_eq!(
            problems,
            ["src/low.rs:6: low imports high (layer 1 -> layer 3)"]
        );
    }

    #[test]
    fn resolves_super_relative_to_the_file() {
        let changes = [
            ("high/mod.rs", "pub mod x;\npub mod z;\n"),
            ("high/x/mod.rs", "pub mod y;\nuse super::z::Z;\n"),
            (
                "high/x/y.rs",
                "use super::Q;\nfn f() { super::super::z::g(); }\n",
            ),
            ("high/z.rs", "pub struct Z;\n"),
            (
                "side.rs",
                "use super::high::H;\nmod inner { use super::super::Cancelled; }\n",
            ),
        ];
        assert_eq!(
            edges_from(&changes, "high::x"),
            BTreeSet::from(["high::z".into()])
        );
        assert_eq!(
            edges_from(&changes, "high::x::y"),
            BTreeSet::from(["high::x".into(), "high::z".into()])
        );
        assert_eq!(
            edges_from(&changes, "side"),
            BTreeSet::from(["high".into(), "crate".into()])
        );
        let problems = check(&changes);
        assert_eq!(
            problems,
            [
                "src/side.rs:1: side imports high (layer 2 -> layer 3)",
                "src/side.rs:2: side imports crate (layer 2 -> layer 4)",
            ]
        );
    }

    #[test]
    fn reports_an_unlisted_module_and_a_stale_table_entry() {
        let changes = [
            ("extra.rs", "use crate::low;\n"),
            ("side.rs", ""),
            ("high/mod.rs", "use crate::mid::a::A;\n"),
        ];
        assert_eq!(
            check(&changes),
            [
                "src/extra.rs: unlisted module `extra` (not in the layer table)",
                "layer table: `side` (layer 2) has no module in src/",
            ]
        );
    }

    #[test]
    fn the_binary_may_use_only_its_listed_modules() {
        let main = "use toy::high::run;\nfn main() {\n    toy::low::f();\n    run();\n}\n";
        let problems = check(&[("main.rs", main)]);
        assert_eq!(
            problems,
            ["src/main.rs:3: main imports low (the binary may use only high)"]
        );
    }

    #[test]
    fn finds_input_names_and_exit_codes_in_the_engine_only() {
        let low = "/// Pass `force` to overwrite.\nfn f() -> std::process::ExitCode {\n    let m = \"first line\nuse `force` or `restore-to`\";\n    if m.is_empty() { std::process::exit(1) }\n    exit(130);\n    exit(42);\n}\n#[cfg(test)]\nmod tests { const M: &str = \"`force`\"; fn t() { exit(2); } }\n";
        let cli = "fn run() -> ExitCode { eprintln!(\"`force` is set\"); std::process::exit(2) }\n";
        let files = toy(&[
            ("low.rs", low),
            ("cli/mod.rs", cli),
            ("main.rs", "fn main() { exit(1) }\n"),
        ]);
        let problems = engine_violations(&TOY, &files, &["force", "restore-to", "verbose"]);
        assert_eq!(
            problems,
            [
                "src/low.rs:4: engine module names input `force`",
                "src/low.rs:4: engine module names input `restore-to`",
                "src/low.rs:2: engine module uses ExitCode",
                "src/low.rs:5: engine module uses std::process::exit",
                "src/low.rs:6: engine module uses exit code `exit(130)`",
            ]
        );
    }
}
