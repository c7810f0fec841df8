//! Command actions (being written).
