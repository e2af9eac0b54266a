//! Node agent core shared by `scope agent --local` and `appscope-operator agent`.

pub mod cgroup;
