//! Crash-bundle types and file naming (design §3).
