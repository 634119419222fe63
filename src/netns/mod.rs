//! Throw-away hosts in network namespaces (stub; being written).
