fn main() -> std::process::ExitCode {
    weir_runtime::cli::main()
}
