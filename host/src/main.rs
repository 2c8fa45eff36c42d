//! The `numafit` binary; everything lives in the `numafit_host` library.

fn main() -> std::process::ExitCode {
    numafit_host::cli::main()
}
