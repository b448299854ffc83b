//! Tests of senet-data, on data written into temporary folders (plus the real CIFAR-10 JPEG
//! archive from ../shared/data when it is there). One test binary keeps linking cheap.

mod augment;
mod cifar;
mod common;
mod download;
mod folder;
mod loader;
