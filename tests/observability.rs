//! Observability end to end (being written).
