//! Static checks of the Dockerfile (there is no Docker engine here): every COPY source
//! exists (in the build context or in the builder's output), the artifacts the builder
//! collects are the ones cargo really produces, the runtime image holds what the chart and
//! the webhook run, it runs as non-root, and it carries the OCI labels.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

#[derive(Debug)]
struct Instr {
    stage: usize,
    op: String,
    args: String,
}

#[derive(Debug)]
struct Dockerfile {
    /// (base image, stage name)
    stages: Vec<(String, Option<String>)>,
    instrs: Vec<Instr>,
    /// ARGs declared before the first FROM
    global_args: Vec<String>,
}

fn parse(text: &str) -> Dockerfile {
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    assert!(cur.is_empty(), "Dockerfile ends with a line continuation");
    let mut df = Dockerfile {
        stages: Vec::new(),
        instrs: Vec::new(),
        global_args: Vec::new(),
    };
    for l in logical {
        let (op, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let op = op.to_ascii_uppercase();
        let args = args.trim().to_string();
        if op == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                _ => None,
            };
            df.stages.push((words[0].to_string(), name));
            continue;
        }
        if df.stages.is_empty() {
            assert_eq!(op, "ARG", "only ARG may precede the first FROM, found {op}");
            df.global_args
                .push(args.split('=').next().unwrap().to_string());
            continue;
        }
        df.instrs.push(Instr {
            stage: df.stages.len() - 1,
            op,
            args,
        });
    }
    df
}

fn dockerfile() -> Dockerfile {
    parse(&std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile at the repo root"))
}

/// (source, destination) pairs of `install ... SRC DST` in the RUN lines of a stage.
fn installs(df: &Dockerfile, stage: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in df
        .instrs
        .iter()
        .filter(|i| i.stage == stage && i.op == "RUN")
    {
        for cmd in i.args.split("&&") {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            if words.first() == Some(&"install") {
                let paths: Vec<&str> = words[1..]
                    .iter()
                    .enumerate()
                    .filter(|(k, w)| !(w.starts_with('-') || (*k > 0 && words[*k] == "-m")))
                    .map(|(_, w)| *w)
                    .collect();
                assert_eq!(
                    paths.len(),
                    2,
                    "install with one source and one destination: {cmd}"
                );
                out.push((paths[0].to_string(), paths[1].to_string()));
            }
            if words.first() == Some(&"ln") && words.get(1) == Some(&"-s") {
                // symlink destination is an output too
                out.push((format!("symlink:{}", words[2]), words[3].to_string()));
            }
        }
    }
    out
}

fn stage_index(df: &Dockerfile, name: &str) -> usize {
    df.stages
        .iter()
        .position(|(_, n)| n.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no stage named {name}"))
}

/// Paths of the runtime image, from its `COPY --from=builder SRC DST` lines.
fn runtime_files(df: &Dockerfile) -> BTreeSet<String> {
    let builder = stage_index(df, "builder");
    let outputs: Vec<String> = installs(df, builder).into_iter().map(|(_, d)| d).collect();
    let last = df.stages.len() - 1;
    let mut files = BTreeSet::new();
    for i in df
        .instrs
        .iter()
        .filter(|i| i.stage == last && i.op == "COPY")
    {
        let words: Vec<&str> = i.args.split_whitespace().collect();
        assert_eq!(
            words[0], "--from=builder",
            "runtime COPY must come from the builder: {}",
            i.args
        );
        let (src, dst) = (words[1], words[2]);
        if src.ends_with('/') {
            let found: Vec<&String> = outputs.iter().filter(|o| o.starts_with(src)).collect();
            assert!(
                !found.is_empty(),
                "COPY source {src} holds nothing the builder installs"
            );
            for o in found {
                files.insert(format!("{dst}{}", &o[src.len()..]));
            }
        } else {
            assert!(
                outputs.iter().any(|o| o == src),
                "COPY source {src} is not produced by the builder stage (outputs: {outputs:?})"
            );
            files.insert(dst.to_string());
        }
    }
    files
}

fn dockerignore() -> Vec<String> {
    std::fs::read_to_string(root().join(".dockerignore"))
        .expect(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn ignored(patterns: &[String], rel: &str) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim_end_matches('/');
        if let Some(suffix) = p.strip_prefix("**/") {
            let suffix = suffix.trim_start_matches('*');
            rel.ends_with(suffix)
        } else if let Some(prefix) = p.strip_suffix('*') {
            rel.starts_with(prefix)
        } else {
            rel == p || rel.starts_with(&format!("{p}/"))
        }
    })
}

#[test]
fn context_copies_exist_and_are_not_ignored() {
    let df = dockerfile();
    let ign = dockerignore();
    for must in [".git", "target", ".tools"] {
        assert!(ignored(&ign, must), ".dockerignore should exclude {must}");
    }
    let builder = stage_index(&df, "builder");
    let mut copies = 0;
    for i in df
        .instrs
        .iter()
        .filter(|i| i.stage == builder && i.op == "COPY")
    {
        let words: Vec<&str> = i
            .args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[..words.len() - 1] {
            copies += 1;
            let p = root().join(src);
            assert!(p.exists(), "COPY source {src} does not exist in the repo");
            if *src != "." {
                assert!(
                    !ignored(&ign, src),
                    "COPY source {src} is excluded by .dockerignore"
                );
            }
        }
    }
    assert!(copies >= 1);
    // `cargo build --locked` needs the lock file and every member's manifest and sources
    let meta = cargo_metadata();
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    for pkg in meta["packages"].as_array().unwrap() {
        let manifest = Path::new(pkg["manifest_path"].as_str().unwrap());
        needed.push(rel(manifest));
        for t in pkg["targets"].as_array().unwrap() {
            needed.push(rel(Path::new(t["src_path"].as_str().unwrap())));
        }
    }
    for n in needed {
        assert!(root().join(&n).exists(), "{n} missing from the repo");
        assert!(
            !ignored(&ign, &n),
            "{n} is needed by the image build but .dockerignore excludes it"
        );
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn cargo_metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run(Command::new(cargo).current_dir(root()).args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]));
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

#[test]
fn builder_collects_artifacts_cargo_really_builds() {
    let df = dockerfile();
    let builder = stage_index(&df, "builder");
    let meta = cargo_metadata();
    // target name -> (package, kinds)
    let mut targets = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        for t in pkg["targets"].as_array().unwrap() {
            let kinds: Vec<String> = t["kind"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            targets.push((
                pkg["name"].as_str().unwrap().to_string(),
                t["name"].as_str().unwrap().to_string(),
                kinds,
            ));
        }
    }
    let run_text: String = df
        .instrs
        .iter()
        .filter(|i| i.stage == builder && i.op == "RUN")
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let built_packages = |pkg: &str, zig: bool| {
        run_text.split("&&").any(|cmd| {
            let is_build = if zig {
                cmd.contains("cargo zigbuild")
            } else {
                cmd.contains("cargo build")
            };
            is_build
                && cmd
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w == ["-p", pkg])
        })
    };
    let mut checked = 0;
    for (src, dst) in installs(&df, builder) {
        if src.starts_with("symlink:") {
            continue;
        }
        let file = Path::new(&src)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if let Some(lib) = file.strip_prefix("lib").and_then(|f| f.strip_suffix(".so")) {
            let (pkg, _, _) = targets
                .iter()
                .find(|(_, n, k)| n == lib && k.contains(&"cdylib".to_string()))
                .unwrap_or_else(|| panic!("{src}: no cdylib target named {lib} in the workspace"));
            assert!(
                built_packages(pkg, true),
                "{src}: package {pkg} is not built with cargo zigbuild"
            );
            // The output directory follows the profile the zigbuild command names.
            let zig_cmd = run_text
                .split("&&")
                .find(|c| c.contains("cargo zigbuild"))
                .unwrap();
            let words: Vec<&str> = zig_cmd.split_whitespace().collect();
            let profile = words
                .windows(2)
                .find(|w| w[0] == "--profile")
                .map(|w| w[1])
                .unwrap_or(if words.contains(&"--release") {
                    "release"
                } else {
                    "debug"
                });
            let dir = format!("target/x86_64-unknown-linux-gnu/{profile}/");
            assert!(
                src.starts_with(&dir),
                "{src}: zigbuild output of profile {profile} lives under {dir}"
            );
            assert!(
                run_text.contains("x86_64-unknown-linux-gnu.${LIBSCOPE_GLIBC}"),
                "old-glibc target"
            );
            // the real build names the library this way
            assert_eq!(
                testkit::libscope_path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy(),
                file
            );
        } else {
            let (pkg, _, _) = targets
                .iter()
                .find(|(_, n, k)| n == &file && k.contains(&"bin".to_string()))
                .unwrap_or_else(|| panic!("{src}: no binary target named {file} in the workspace"));
            assert!(
                built_packages(pkg, false),
                "{src}: package {pkg} is not in the `cargo build -p` list"
            );
            assert_eq!(src, format!("target/release/{file}"));
            let built = testkit::bin_path(pkg, &file);
            assert!(built.is_file(), "{}", built.display());
        }
        assert!(
            dst.starts_with("/out/"),
            "{dst}: the builder collects into /out"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "operator, webhook, scope and libscope.so");
    assert!(
        run_text.contains("--locked"),
        "release builds use the committed Cargo.lock"
    );
}

#[test]
fn runtime_image_holds_what_the_chart_runs() {
    let df = dockerfile();
    let files = runtime_files(&df);
    for f in [
        "/usr/bin/appscope-operator",
        "/usr/bin/appscope-webhook",
        "/usr/bin/scope",
        "/usr/bin/kubectl-scope",
        "/usr/lib/appscope/libscope.so",
    ] {
        assert!(
            files.contains(f),
            "{f} not in the runtime image; it has {files:?}"
        );
    }
    // every `command:` of the chart's workloads is in the image
    let mut commands = 0;
    for entry in std::fs::read_dir(chart_dir().join("templates")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("command: [\"") {
                let bin = rest.split('"').next().unwrap();
                assert!(
                    files.contains(bin),
                    "the chart runs {bin}, which the image lacks"
                );
                commands += 1;
            }
        }
    }
    assert_eq!(commands, 3, "agent, controller and webhook commands");
    // the ENTRYPOINT is one of them
    let last = df.stages.len() - 1;
    let ep = df
        .instrs
        .iter()
        .find(|i| i.stage == last && i.op == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let ep: Vec<String> = serde_json::from_str(&ep.args).expect("exec-form ENTRYPOINT (no shell)");
    assert!(
        files.contains(&ep[0]),
        "ENTRYPOINT {} not in the image",
        ep[0]
    );
    // the init container the webhook injects runs a binary of this image, found on PATH
    // (/usr/bin) since the image has no shell
    let inject = std::fs::read_to_string(root().join("webhook/src/inject.rs")).unwrap_or_default();
    if let Some(rest) = inject.split("\"command\": [\"").nth(1) {
        let bin = rest.split('"').next().unwrap();
        let full = if bin.starts_with('/') {
            bin.to_string()
        } else {
            format!("/usr/bin/{bin}")
        };
        assert!(
            files.contains(&full),
            "the injected init container runs {bin}; the image lacks {full}"
        );
    }
    // the library path the init container copies from is the one in the image
    let env = df
        .instrs
        .iter()
        .find(|i| i.stage == last && i.op == "ENV" && i.args.starts_with("APPSCOPE_LIB_SOURCE="));
    let src = env
        .expect("ENV APPSCOPE_LIB_SOURCE")
        .args
        .split('=')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(files.contains(&src));
}

#[test]
fn runtime_image_is_non_root_with_oci_labels_and_base_image_args() {
    let df = dockerfile();
    for a in ["RUST_IMAGE", "RUNTIME_IMAGE"] {
        assert!(
            df.global_args.contains(&a.to_string()),
            "ARG {a} before the first FROM"
        );
        assert!(
            df.stages.iter().any(|(img, _)| img == &format!("${{{a}}}")),
            "a stage is FROM ${{{a}}}"
        );
    }
    let last = df.stages.len() - 1;
    let user = df
        .instrs
        .iter()
        .rev()
        .find(|i| i.stage == last && i.op == "USER")
        .expect("USER in runtime stage");
    let uid = user.args.split(':').next().unwrap();
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("numeric USER (runAsNonRoot needs it): {}", user.args));
    assert_ne!(uid, 0, "the image runs as non-root");
    // the chart's restricted pods run as that uid
    let helpers = std::fs::read_to_string(chart_dir().join("templates/_helpers.tpl")).unwrap();
    assert!(
        helpers.contains(&format!("runAsUser: {uid}")),
        "chart pods use uid {uid}"
    );
    let labels: String = df
        .instrs
        .iter()
        .filter(|i| i.stage == last && i.op == "LABEL")
        .map(|i| i.args.clone())
        .collect();
    for l in [
        "title",
        "description",
        "licenses",
        "version",
        "revision",
        "source",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{l}=")),
            "OCI label {l}"
        );
    }
    // the image version label defaults to the chart's appVersion
    let chart = read_yaml(&chart_dir().join("Chart.yaml"));
    let app = chart["appVersion"].as_str().unwrap();
    assert!(
        df.instrs
            .iter()
            .any(|i| i.op == "ARG" && i.args == format!("VERSION={app}")),
        "ARG VERSION={app}"
    );
}

#[test]
fn parser_rejects_what_it_should() {
    // the checks above are only as good as the parser: make sure it sees the structure
    let df = parse(
        "ARG A=1\nFROM ${A} AS b\nRUN install -D -m 0755 target/release/x /out/usr/bin/x \\\n && ln -s x /out/usr/bin/y\nFROM scratch\nCOPY --from=b /out/usr/bin/ /usr/bin/\n",
    );
    assert_eq!(df.stages.len(), 2);
    assert_eq!(
        installs(&df, 0),
        vec![
            ("target/release/x".to_string(), "/out/usr/bin/x".to_string()),
            ("symlink:x".to_string(), "/out/usr/bin/y".to_string()),
        ]
    );
    let r = std::panic::catch_unwind(|| {
        let df =
            parse("FROM a AS builder\nRUN true\nFROM b\nCOPY --from=builder /out/missing /x\n");
        runtime_files(&df)
    });
    assert!(
        r.is_err(),
        "a COPY of something the builder does not produce must fail"
    );
    assert!(ignored(&["target".into()], "target/debug/x"));
    assert!(!ignored(&["target".into()], "targets.txt"));
    assert!(ignored(&["**/*.rs.bk".into()], "cli/src/main.rs.bk"));
}
