//! Admission webhook.
