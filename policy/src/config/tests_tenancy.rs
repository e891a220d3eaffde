//! Tenancy config tests.
