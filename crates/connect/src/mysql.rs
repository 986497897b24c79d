//! Placeholder: the mysql tester is being written.
