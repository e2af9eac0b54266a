//! AppScope-compatible configuration model.
