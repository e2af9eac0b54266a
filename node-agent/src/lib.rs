//! Node agent core.
