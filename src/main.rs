//! The `d1-backup` binary: everything lives in the library; see `d1_backup::cli`.

fn main() -> std::process::ExitCode {
    d1_backup::cli::main_entry()
}
