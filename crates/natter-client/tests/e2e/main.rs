//! End-to-end tests: real `natterd` servers in-process, real devices with their own stores,
//! everything encrypted on the way.

mod helpers;

mod at_rest;
mod device_lists;
mod direct;
mod failover;
mod live;
mod logout;
mod offline;
mod privacy;
mod reset;
mod revocation;
mod rooms;
mod trust;
