//! Download, checksum and extraction, against a local one-shot HTTP server.

use senet_data::{load_cifar10, load_cifar100, DownloadOptions, Error, Labels};

use crate::common::*;

/// A CIFAR-10 archive as the official one is laid out, from generated records.
fn cifar10_archive() -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    write_cifar10(src.path(), 2, 3);
    targz_of(src.path())
}

fn options(url: &str, md5: &str) -> DownloadOptions {
    DownloadOptions {
        url: Some(url.to_string()),
        md5: Some(md5.to_string()),
        offline: false,
    }
}

#[test]
fn good_archive_downloads_extracts_and_is_reused() {
    let archive = cifar10_archive();
    let server = Server::start("200 OK", archive.clone(), 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not/yet/there");
    // Upper-case md5 is accepted.
    let ds = load_cifar10(
        &data,
        &options(&server.url, &md5_hex(&archive).to_uppercase()),
    )
    .unwrap();
    assert_eq!(server.finish(), 1);
    assert_eq!((ds.train.len, ds.test.len), (10, 3));
    assert_eq!(ds.train.image(7), pixels(7).as_slice());
    // Only the dataset remains: no temporary archive or extraction folder.
    assert_eq!(listing(&data), ["cifar-10-batches-bin"]);

    // Next time the files are there: no request is made (this URL would be refused).
    let again = load_cifar10(&data, &options(&dead_url(), "00")).unwrap();
    assert_eq!(again.train, ds.train);
}

#[test]
fn cifar100_archive_downloads() {
    let src = tempfile::tempdir().unwrap();
    write_cifar100(src.path(), 4, 2);
    let archive = targz_of(src.path());
    let server = Server::start("200 OK", archive.clone(), 1);
    let dir = tempfile::tempdir().unwrap();
    let ds = load_cifar100(
        dir.path(),
        Labels::Coarse,
        &options(&server.url, &md5_hex(&archive)),
    )
    .unwrap();
    server.finish();
    assert_eq!((ds.train.len, ds.test.len, ds.classes.len()), (4, 2, 20));
    assert_eq!(listing(dir.path()), ["cifar-100-binary"]);
}

#[test]
fn wrong_checksum_names_both_and_leaves_nothing() {
    let archive = cifar10_archive();
    let server = Server::start("200 OK", archive.clone(), 1);
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0123456789abcdef0123456789abcdef";
    let err = load_cifar10(dir.path(), &options(&server.url, wrong)).unwrap_err();
    server.finish();
    assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(wrong), "{msg}");
    assert!(msg.contains(&md5_hex(&archive)), "{msg}");
    assert!(msg.contains("http://127.0.0.1:"), "{msg}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn refused_connection_says_where_to_put_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_cifar10(dir.path(), &options(&dead_url(), "00")).unwrap_err();
    assert!(matches!(err, Error::Download(_)), "{err:?}");
    let msg = err.to_string();
    let folder = dir.path().join("cifar-10-batches-bin");
    assert!(msg.contains(&folder.display().to_string()), "{msg}");
    assert!(msg.contains("data_batch_1.bin"), "{msg}");
    assert!(msg.contains("test_batch.bin, batches.meta.txt"), "{msg}");
    assert!(msg.contains(senet_data::CIFAR10_URL), "{msg}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn server_error_says_where_to_put_the_files() {
    let server = Server::start("500 Internal Server Error", b"oops".to_vec(), 1);
    let dir = tempfile::tempdir().unwrap();
    let err = load_cifar10(dir.path(), &options(&server.url, "00")).unwrap_err();
    server.finish();
    let msg = err.to_string();
    assert!(msg.contains("500"), "{msg}");
    assert!(msg.contains("cifar-10-batches-bin"), "{msg}");
    assert!(msg.contains("data_batch_5.bin"), "{msg}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn archive_without_the_dataset_is_refused_and_removed() {
    let archive = targz(&[("something/else.txt", b"hello")]);
    let server = Server::start("200 OK", archive.clone(), 1);
    let dir = tempfile::tempdir().unwrap();
    let err = load_cifar10(dir.path(), &options(&server.url, &md5_hex(&archive))).unwrap_err();
    server.finish();
    let msg = err.to_string();
    assert!(
        msg.contains("does not contain cifar-10-batches-bin/data_batch_1.bin"),
        "{msg}"
    );
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}
