//! Allocation-free ELF core writer.
