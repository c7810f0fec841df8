//! File actions (being written).
