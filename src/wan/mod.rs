//! The emulated wide-area network (stub; being written).
