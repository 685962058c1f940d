//! The Resetline flow language.
