#![no_std]
// This file exists to enable the library target, so that filter-user can
// list this crate as a build dependency and be rebuilt when it changes.
