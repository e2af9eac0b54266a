//! Rendering a [`Config`] back to `scope.yml` (AppScope's `scope extract`).

use serde_yaml::{Mapping, Value};

use crate::model::{Config, EventWatchType, MetricWatchType};
use crate::transport::Transport;

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn transport(t: &Transport) -> Value {
    map(vec![
        ("type", s(t.kind.as_str())),
        ("host", s(&t.host)),
        ("port", s(&t.port)),
        ("path", s(&t.path)),
        ("buffering", s(t.buffering.as_str())),
        (
            "tls",
            map(vec![
                ("enable", Value::Bool(t.tls.enable)),
                ("validateserver", Value::Bool(t.tls.validateserver)),
                ("cacertpath", s(&t.tls.cacertpath)),
            ]),
        ),
    ])
}

impl Config {
    /// This config as a `scope.yml` document. [`Config::from_yaml_str`] of the result
    /// gives this config back, except that filters of disabled event categories are
    /// not kept (AppScope lists only enabled categories) and `$VAR` in values is
    /// expanded again when loaded.
    pub fn to_yaml(&self) -> String {
        let metric_watch: Vec<Value> = MetricWatchType::ALL
            .into_iter()
            .filter(|t| self.metric.watch.get(*t))
            .map(|t| map(vec![("type", s(t.as_str()))]))
            .collect();
        let event_watch: Vec<Value> = EventWatchType::ALL
            .into_iter()
            .filter(|t| self.event.watch.get(*t).enable)
            .map(|t| {
                let w = self.event.watch.get(t);
                let mut e = vec![
                    ("type", s(t.as_str())),
                    ("name", s(&w.name)),
                    ("field", s(&w.field)),
                    ("value", s(&w.value)),
                ];
                match t {
                    EventWatchType::Console => e.push(("allowbinary", Value::Bool(w.allowbinary))),
                    EventWatchType::Http => e.push((
                        "headers",
                        Value::Sequence(w.headers.iter().map(s).collect()),
                    )),
                    _ => {}
                }
                map(e)
            })
            .collect();
        let mut snapshot = vec![
            ("coredump", Value::Bool(self.libscope.snapshot.coredump)),
            ("backtrace", Value::Bool(self.libscope.snapshot.backtrace)),
            ("dir", s(self.snapshot_dir.to_string_lossy())),
        ];
        snapshot.push(("core_maxsize", Value::Number(self.core_maxsize.into())));
        let mut libscope = vec![
            ("configevent", Value::Bool(self.libscope.configevent)),
            (
                "summaryperiod",
                Value::Number(self.libscope.summaryperiod.into()),
            ),
            ("commanddir", s(self.libscope.commanddir.to_string_lossy())),
            (
                "log",
                map(vec![
                    ("level", s(self.libscope.log.level.as_str())),
                    ("transport", transport(&self.libscope.log.transport)),
                ]),
            ),
            ("snapshot", map(snapshot)),
        ];
        if let Some(d) = &self.status_dir {
            libscope.push(("statusdir", s(d.to_string_lossy())));
        }
        let mut tags = Mapping::new();
        for (k, v) in &self.tags {
            tags.insert(s(k), s(v));
        }
        let protocol: Vec<Value> = self
            .protocol
            .iter()
            .map(|p| {
                map(vec![
                    ("name", s(&p.name)),
                    ("regex", s(&p.regex)),
                    ("binary", Value::Bool(p.binary)),
                    ("len", Value::Number(p.len.into())),
                    ("detect", Value::Bool(p.detect)),
                    ("payload", Value::Bool(p.payload)),
                ])
            })
            .collect();
        let mut custom = Mapping::new();
        for c in &self.custom {
            let mut filter = Mapping::new();
            for (k, v) in [
                ("procname", &c.filter.procname),
                ("arg", &c.filter.arg),
                ("hostname", &c.filter.hostname),
                ("username", &c.filter.username),
                ("env", &c.filter.env),
                ("ancestor", &c.filter.ancestor),
            ] {
                if let Some(v) = v {
                    filter.insert(s(k), s(v));
                }
            }
            custom.insert(
                s(&c.name),
                map(vec![
                    ("filter", Value::Mapping(filter)),
                    ("config", c.config.clone()),
                ]),
            );
        }
        let mut top = vec![
            (
                "metric",
                map(vec![
                    ("enable", Value::Bool(self.metric.enable)),
                    (
                        "format",
                        map(vec![
                            ("type", s(self.metric.format.kind.as_str())),
                            ("statsdprefix", s(&self.metric.format.statsdprefix)),
                            (
                                "statsdmaxlen",
                                Value::Number(self.metric.format.statsdmaxlen.into()),
                            ),
                            (
                                "verbosity",
                                Value::Number(self.metric.format.verbosity.into()),
                            ),
                        ]),
                    ),
                    ("watch", Value::Sequence(metric_watch)),
                    ("transport", transport(&self.metric.transport)),
                ]),
            ),
            (
                "event",
                map(vec![
                    ("enable", Value::Bool(self.event.enable)),
                    (
                        "format",
                        map(vec![
                            ("type", s(self.event.format.kind.as_str())),
                            (
                                "maxeventpersec",
                                Value::Number(self.event.format.maxeventpersec.into()),
                            ),
                            ("enhancefs", Value::Bool(self.event.format.enhancefs)),
                        ]),
                    ),
                    ("watch", Value::Sequence(event_watch)),
                    ("transport", transport(&self.event.transport)),
                ]),
            ),
            (
                "payload",
                map(vec![
                    ("enable", Value::Bool(self.payload.enable)),
                    ("dir", s(self.payload.dir.to_string_lossy())),
                ]),
            ),
            ("libscope", map(libscope)),
            (
                "cribl",
                map(vec![
                    ("enable", Value::Bool(self.cribl.enable)),
                    ("authtoken", s(&self.cribl.authtoken)),
                    ("transport", transport(&self.cribl.transport)),
                ]),
            ),
            ("tags", Value::Mapping(tags)),
            ("protocol", Value::Sequence(protocol)),
        ];
        if !custom.is_empty() {
            top.push(("custom", Value::Mapping(custom)));
        }
        serde_yaml::to_string(&map(top)).unwrap_or_default()
    }
}
