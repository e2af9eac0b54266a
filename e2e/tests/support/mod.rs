//! Helpers shared by the chart, manifest, Dockerfile and kind tests (issue 6).
//!
//! Tools (helm, the PyPI validators) come from the repo-local `.tools/` that
//! `.ci/setup.d/60-chart.sh` installs, or from PATH. A missing tool fails the test in CI
//! (`CI=true`) and skips it with a loud message elsewhere.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn root() -> PathBuf {
    testkit::workspace_root()
}

pub fn chart_dir() -> PathBuf {
    root().join("charts").join("appscope")
}

/// Finds `name` in `.tools/bin`, `.tools/venv/bin`, then PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let tools = root().join(".tools");
    for dir in [tools.join("bin"), tools.join("venv").join("bin")] {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The tool, or `None` after printing a loud skip message. Panics in CI: there the setup
/// script must have installed it.
pub fn require_tool(name: &str, test: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None if in_ci() => panic!(
            "{test}: `{name}` not found in .tools/ or PATH; .ci/setup.d/60-chart.sh installs it"
        ),
        None => {
            eprintln!(
                "\n*** SKIPPED {test}: `{name}` not found in .tools/ or PATH \
                 (run `bash .ci/setup.d/60-chart.sh`) ***\n"
            );
            None
        }
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// `helm template appscope charts/appscope -n appscope <args>`: Ok(objects) or Err(stderr).
pub fn helm_template(helm: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = run(Command::new(helm)
        .args(["template", "appscope"])
        .arg(chart_dir())
        .args(["--namespace", "appscope", "--kube-version", "1.33.0"])
        .args(args));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(parse_docs(&String::from_utf8_lossy(&out.stdout)))
}

/// All non-empty documents of a multi-document YAML string, as JSON values.
pub fn parse_docs(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| {
            let v = serde_yaml::Value::deserialize(d).expect("rendered YAML parses");
            serde_json::to_value(v).expect("YAML converts to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The one object of `kind` named `name` (panics with the list of what was rendered).
pub fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = objs
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind}/{name} rendered; have {have:?}")
        })
}

pub fn kinds(objs: &[Value], kind: &str) -> Vec<Value> {
    objs.iter().filter(|o| o["kind"] == kind).cloned().collect()
}

/// Markdown reference of the chart's values: one table per top-level key, one row per leaf
/// value (type, default from values.yaml, description and constraints from the schema).
pub fn values_doc(schema: &Value, values: &Value) -> String {
    let mut out = String::new();
    out.push_str("# Chart values reference\n\n");
    out.push_str(
        "<!-- Generated from charts/appscope/values.schema.json and values.yaml by the e2e test \
         `chart::values_reference_is_current`; regenerate with \
         `APPSCOPE_BLESS=1 cargo test -p e2e --test chart values_reference`. Do not edit. -->\n\n",
    );
    out.push_str(
        "Every value of `charts/appscope` (set with `--set key=value` or `-f my-values.yaml`). \
         Helm refuses values that do not match the schema: unknown keys, wrong types and values \
         outside the allowed set fail `helm install`/`helm template` with the schema's message.\n\n",
    );
    let props = schema["properties"]
        .as_object()
        .expect("schema has properties");
    let mut scalars = Vec::new();
    for (key, sub) in props {
        if key == "global" {
            continue;
        }
        if is_section(sub) {
            continue;
        }
        scalars.push(row(schema, key, sub, &values[key.as_str()]));
    }
    out.push_str("## Top-level values\n\n");
    table(&mut out, &scalars);
    for (key, sub) in props {
        if !is_section(sub) {
            continue;
        }
        out.push_str(&format!("## `{key}`\n\n"));
        if let Some(d) = sub["description"].as_str() {
            out.push_str(d);
            out.push_str("\n\n");
        }
        let mut rows = Vec::new();
        leaves(schema, key, sub, &values[key.as_str()], &mut rows);
        table(&mut out, &rows);
    }
    out
}

fn is_section(s: &Value) -> bool {
    s["type"] == "object" && s.get("properties").is_some()
}

fn leaves(schema: &Value, path: &str, s: &Value, v: &Value, rows: &mut Vec<[String; 4]>) {
    for (k, sub) in s["properties"].as_object().expect("section has properties") {
        let p = format!("{path}.{k}");
        if is_section(sub) {
            leaves(schema, &p, sub, &v[k.as_str()], rows);
        } else {
            rows.push(row(schema, &p, sub, &v[k.as_str()]));
        }
    }
}

fn resolve<'a>(schema: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        Some(r) => r.split('/').fold(schema, |acc, part| &acc[part]),
        None => s,
    }
}

fn row(schema: &Value, path: &str, s: &Value, default: &Value) -> [String; 4] {
    let s = resolve(schema, s);
    let ty = match &s["type"] {
        Value::String(t) => match (t.as_str(), s["items"]["type"].as_str()) {
            ("array", Some(it)) => format!("list of {it}"),
            _ => t.clone(),
        },
        _ if s.get("anyOf").is_some() => "quantity".to_string(),
        _ => "any".to_string(),
    };
    let mut desc = s["description"].as_str().unwrap_or("").to_string();
    let mut notes = Vec::new();
    let en = s.get("enum").or_else(|| s["items"].get("enum"));
    if let Some(e) = en.and_then(Value::as_array) {
        let vals: Vec<String> = e.iter().map(|x| format!("`{}`", scalar(x))).collect();
        notes.push(format!("one of {}", vals.join(", ")));
    }
    if let Some(m) = s.get("minimum") {
        notes.push(format!("min {m}"));
    }
    if let Some(m) = s.get("maximum") {
        notes.push(format!("max {m}"));
    }
    if let Some(m) = s.get("pattern").and_then(Value::as_str) {
        notes.push(format!("pattern `{m}`"));
    }
    if !notes.is_empty() {
        desc.push_str(&format!(" ({})", notes.join("; ")));
    }
    let def = match default {
        Value::Null => "".to_string(),
        Value::String(t) if t.contains('\n') => "(multi-line, see values.yaml)".to_string(),
        other => format!("`{}`", serde_json::to_string(other).expect("json")),
    };
    [format!("`{path}`"), ty, def, desc]
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(out: &mut String, rows: &[[String; 4]]) {
    out.push_str("| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
}

/// Every leaf path of a values tree as key segments (maps are walked; lists and scalars
/// are leaves).
pub fn value_paths(v: &Value, prefix: &[String], out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, sub) in m {
                let mut p = prefix.to_vec();
                p.push(k.clone());
                value_paths(sub, &p, out);
            }
        }
        _ => out.push(prefix.to_vec()),
    }
}

/// The schema node for a values path, following `properties` (and `$ref`).
pub fn schema_at<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = schema;
    for part in path {
        let part = part.as_str();
        cur = resolve(schema, cur);
        if let Some(p) = cur["properties"].get(part) {
            cur = p;
        } else if cur["additionalProperties"].is_object() {
            cur = &cur["additionalProperties"];
        } else if cur["type"] == "object" && cur.get("additionalProperties").is_none() {
            // free-form map (e.g. affinity, requests): the rest is not described further
            return Some(cur);
        } else {
            return None;
        }
    }
    Some(resolve(schema, cur))
}

pub fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::to_value(v).expect("YAML converts to JSON")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
