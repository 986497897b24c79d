//! Placeholder: the ldap tester is being written.
