//! `ws-daemon export`: a workspace's newest backup as one archive file (or on standard output),
//! read from the configured storage directly. The exit code is the gRPC status code of the error
//! (NOT_FOUND 5 when there is no backup, DATA_LOSS 15 when its data is damaged), 0 on success.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wsd_core::Config;

use crate::cli::ExportArgs;

pub fn main(args: ExportArgs, config: Result<Config, String>) -> ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ws-daemon: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ws-daemon export: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let to_stdout = args.out.as_os_str() == "-";
    let (out, partial): (Box<dyn Write + Send>, Option<PathBuf>) = if to_stdout {
        (Box::new(std::io::stdout()), None)
    } else {
        let partial = partial_path(&args.out);
        match File::create(&partial) {
            Ok(f) => (Box::new(std::io::BufWriter::new(f)), Some(partial)),
            Err(e) => {
                eprintln!("ws-daemon export: cannot create {}: {e}", partial.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let exported = runtime.block_on(wsd_core::export_backup(
        &config,
        &args.owner,
        &args.meta_id,
        out,
    ));
    match (exported, partial) {
        (Ok(done), partial) => {
            if let Some(partial) = partial {
                if let Err(e) = std::fs::rename(&partial, &args.out) {
                    eprintln!("ws-daemon export: cannot write {}: {e}", args.out.display());
                    let _ = std::fs::remove_file(&partial);
                    return ExitCode::FAILURE;
                }
            }
            let how = if done.from_manifest {
                "made from the chunked backup"
            } else {
                "copied from the full archive"
            };
            let kind = if done.zstd { "tar.zst" } else { "tar" };
            eprintln!("exported {} ({kind}, {how})", done.source);
            ExitCode::SUCCESS
        }
        (Err(e), partial) => {
            if let Some(partial) = partial {
                let _ = std::fs::remove_file(partial);
            }
            eprintln!("ws-daemon export: {} ({})", e, e.reason());
            ExitCode::from(e.code() as u8)
        }
    }
}

/// Where the archive is written until it is complete, next to the file asked for.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}
