//! See lib.rs for ownership and boundary.
