//! libscope.so
