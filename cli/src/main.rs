use std::process::ExitCode;

fn main() -> ExitCode {
    match sealsync_cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
