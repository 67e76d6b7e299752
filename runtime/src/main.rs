#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

fn main() -> std::process::ExitCode {
    weir_runtime::cli::main()
}
