//! Placeholder: the cloud tester is being written.
