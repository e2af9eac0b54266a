//! appscope-operator: node agent, controllers, CRDs, and the cluster side of `kubectl scope`.

pub mod agent;
pub mod agentstate;
pub mod controller;
pub mod copylib;
pub mod crd;
pub mod kubeapi;
pub mod kubectl;
pub mod reconcile;
pub mod snapshot;
pub mod watch;
