//! `appscope-operator`: node agent, controller, CRD generator and library copier.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "appscope-operator",
    version,
    about = "AppScope operator for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print all CRDs as one multi-document YAML.
    Crdgen,
    /// Copy libscope.so into a shared volume atomically (init container).
    CopyLib {
        /// Library to copy [env: APPSCOPE_LIB_SOURCE] [default: /usr/lib/appscope/libscope.so]
        #[arg(long)]
        from: Option<PathBuf>,
        /// Destination directory; the file is written as <to>/libscope.so.
        #[arg(long)]
        to: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Crdgen => match appscope_operator::crd::all_crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("appscope-operator crdgen: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::CopyLib { from, to } => {
            let src = appscope_operator::copylib::resolve_source(
                from,
                std::env::var_os(appscope_operator::copylib::SOURCE_ENV),
            );
            match appscope_operator::copylib::copy_lib(&src, &to) {
                Ok(dest) => {
                    println!("copied {} -> {}", src.display(), dest.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("appscope-operator copy-lib: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
