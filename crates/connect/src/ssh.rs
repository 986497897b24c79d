//! Placeholder: the ssh tester is being written.
