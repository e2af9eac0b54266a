//! The config in effect as AppScope reports it (`info.configuration.current` of the
//! process-start message), and the start message itself.

use serde_json::{Map, Value, json};

use crate::model::{Config, EventWatchType, MetricWatchType};
use crate::transport::{Transport, TransportType};

fn b(v: bool) -> Value {
    Value::String(if v { "true" } else { "false" }.into())
}

fn transport_json(t: &Transport) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(t.kind.as_str()));
    match t.kind {
        TransportType::Udp | TransportType::Tcp => {
            m.insert("host".into(), json!(t.host));
            m.insert("port".into(), json!(t.port));
            m.insert(
                "tls".into(),
                json!({
                    "enable": b(t.tls.enable),
                    "validateserver": b(t.tls.validateserver),
                    "cacertpath": t.tls.cacertpath,
                }),
            );
        }
        TransportType::Unix => {
            m.insert("path".into(), json!(t.path));
        }
        TransportType::File => {
            m.insert("path".into(), json!(t.path));
            m.insert("buffering".into(), json!(t.buffering.as_str()));
        }
        TransportType::Edge => {}
    }
    Value::Object(m)
}

impl Config {
    /// AppScope's config-in-effect object: `{"current": {...}}`. Booleans are the
    /// strings `"true"`/`"false"` and ports strings, as AppScope writes them. Only
    /// enabled watch categories are listed. Our additions appear as
    /// `libscope.snapshot.dir`, `libscope.snapshot.core_maxsize` and
    /// `libscope.statusdir` (only when set).
    pub fn config_in_effect(&self) -> Value {
        let metric_watch: Vec<Value> = MetricWatchType::ALL
            .into_iter()
            .filter(|t| self.metric.watch.get(*t))
            .map(|t| json!({"type": t.as_str()}))
            .collect();
        let event_watch: Vec<Value> = EventWatchType::ALL
            .into_iter()
            .filter(|t| self.event.watch.get(*t).enable)
            .map(|t| {
                let w = self.event.watch.get(t);
                let mut m = Map::new();
                m.insert("type".into(), json!(t.as_str()));
                m.insert("name".into(), json!(w.name));
                m.insert("field".into(), json!(w.field));
                m.insert("value".into(), json!(w.value));
                match t {
                    EventWatchType::Console => {
                        m.insert("allowbinary".into(), b(w.allowbinary));
                    }
                    EventWatchType::Http => {
                        m.insert("headers".into(), json!(w.headers));
                    }
                    _ => {}
                }
                Value::Object(m)
            })
            .collect();
        let protocol: Vec<Value> = self
            .protocol
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "regex": p.regex,
                    "binary": b(p.binary),
                    "len": p.len,
                    "detect": b(p.detect),
                    "payload": b(p.payload),
                })
            })
            .collect();
        let mut snapshot = json!({
            "coredump": b(self.libscope.snapshot.coredump),
            "backtrace": b(self.libscope.snapshot.backtrace),
            "dir": self.snapshot_dir.to_string_lossy(),
            "core_maxsize": self.core_maxsize,
        });
        let _ = &mut snapshot;
        let mut libscope = json!({
            "log": {
                "level": self.libscope.log.level.as_str(),
                "transport": transport_json(&self.libscope.log.transport),
            },
            "snapshot": snapshot,
            "configevent": b(self.libscope.configevent),
            "summaryperiod": self.libscope.summaryperiod,
            "commanddir": self.libscope.commanddir.to_string_lossy(),
        });
        if let (Some(dir), Some(obj)) = (&self.status_dir, libscope.as_object_mut()) {
            obj.insert("statusdir".into(), json!(dir.to_string_lossy()));
        }
        let mut cribl = json!({
            "enable": b(self.cribl.enable),
            "transport": transport_json(&self.cribl.transport),
            "authtoken": self.cribl.authtoken,
        });
        if self.cribl.transport.kind == TransportType::Tcp
            && let Some(t) = cribl.get_mut("transport").and_then(Value::as_object_mut)
        {
            t.remove("buffering");
        }
        json!({
            "current": {
                "metric": {
                    "enable": b(self.metric.enable),
                    "transport": transport_json(&self.metric.transport),
                    "format": {
                        "type": self.metric.format.kind.as_str(),
                        "statsdprefix": self.metric.format.statsdprefix,
                        "statsdmaxlen": self.metric.format.statsdmaxlen,
                        "verbosity": self.metric.format.verbosity,
                    },
                    "watch": metric_watch,
                },
                "libscope": libscope,
                "event": {
                    "enable": b(self.event.enable),
                    "transport": transport_json(&self.event.transport),
                    "format": {
                        "type": self.event.format.kind.as_str(),
                        "maxeventpersec": self.event.format.maxeventpersec,
                        "enhancefs": b(self.event.format.enhancefs),
                    },
                    "watch": event_watch,
                },
                "payload": {
                    "enable": b(self.payload.enable),
                    "dir": self.payload.dir.to_string_lossy(),
                },
                "tags": self.tags,
                "protocol": protocol,
                "cribl": cribl,
            }
        })
    }
}

/// Identity of the scoped process for the start message (`info.process`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    pub libscopever: String,
    pub pid: i64,
    pub ppid: i64,
    pub gid: i64,
    pub groupname: String,
    pub uid: i64,
    pub username: String,
    pub hostname: String,
    pub procname: String,
    pub cmd: String,
    pub id: String,
    pub cgroup: String,
    pub machine_id: String,
    pub uuid: String,
}

/// AppScope's process-start message: `{"format":"ndjson","info":{"process",
/// "configuration","environment"}}` (plus `authtoken` when cribl has one).
/// `environment` is a map of variable name to value.
pub fn start_message(
    cfg: &Config,
    process: &ProcessInfo,
    environment: &[(String, String)],
) -> Value {
    let env: Map<String, Value> = environment
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut msg = json!({
        "format": "ndjson",
        "info": {
            "process": process,
            "configuration": cfg.config_in_effect(),
            "environment": env,
        }
    });
    if cfg.cribl.enable
        && !cfg.cribl.authtoken.is_empty()
        && let Some(o) = msg.as_object_mut()
    {
        o.insert("authtoken".into(), json!(cfg.cribl.authtoken));
    }
    msg
}
