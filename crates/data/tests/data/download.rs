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
        ..Default::default()
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

#[test]
fn a_trickling_or_oversized_download_ends_with_an_error_and_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    // One byte every 50 ms: far under the minimum progress of a 1 s window.
    let mut o = options(
        &trickle_server(1000, std::time::Duration::from_millis(50)),
        "0",
    );
    o.stall_window = Some(std::time::Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = load_cifar10(data.path(), &o).unwrap_err().to_string();
    assert!(err.contains("stalled"), "{err}");
    assert!(started.elapsed().as_secs() < 10);
    assert!(
        listing(data.path()).is_empty(),
        "{:?}",
        listing(data.path())
    );

    // A server announcing more than the cap is refused before anything is written.
    let o = options(
        &trickle_server(1 << 40, std::time::Duration::from_millis(50)),
        "0",
    );
    let err = load_cifar10(data.path(), &o).unwrap_err().to_string();
    assert!(err.contains("over the") && err.contains("cap"), "{err}");

    // The overall deadline ends a transfer that keeps just enough progress.
    let mut o = options(
        &trickle_server(1000, std::time::Duration::from_millis(1)),
        "0",
    );
    o.deadline = Some(std::time::Duration::from_millis(300));
    let err = load_cifar10(data.path(), &o).unwrap_err().to_string();
    assert!(err.contains("cannot download"), "{err}");
    assert!(
        listing(data.path()).is_empty(),
        "{:?}",
        listing(data.path())
    );
}

#[test]
fn a_killed_downloads_leftovers_are_removed_at_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    // What a process killed mid-download leaves (pid 0 never runs a user process).
    std::fs::write(
        data.path().join(".cifar-10-batches-bin.download-0.tar.gz"),
        b"part",
    )
    .unwrap();
    std::fs::create_dir(data.path().join(".cifar-10-batches-bin.extract-0")).unwrap();
    let archive = cifar10_archive();
    let server = Server::start("200 OK", archive.clone(), 1);
    let ds = load_cifar10(data.path(), &options(&server.url, &md5_hex(&archive))).unwrap();
    assert!(ds.train.len > 0);
    server.finish();
    let left = listing(data.path());
    assert!(
        left.iter().all(|n| !n.contains("-0")),
        "stale temporaries remain: {left:?}"
    );
}

type TarGz = tar::Builder<flate2::write::GzEncoder<Vec<u8>>>;

#[test]
fn archives_with_links_devices_or_escaping_paths_are_not_extracted() {
    let build = |edit: &dyn Fn(&mut TarGz)| {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        edit(&mut tar);
        tar.into_inner().unwrap().finish().unwrap()
    };
    let link = |kind: tar::EntryType, target: &str| {
        let target = target.to_string();
        move |tar: &mut TarGz| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o644);
            tar.append_link(&mut h, "cifar-10-batches-bin/data_batch_1.bin", &target)
                .unwrap();
        }
    };
    let escaping = |tar: &mut TarGz| {
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        // Written raw: the builder itself refuses `..` in paths.
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../escape.txt");
        h.set_cksum();
        tar.append(&h, &b"evil"[..]).unwrap();
    };
    let fifo = |tar: &mut TarGz| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "cifar-10-batches-bin/test_batch.bin", &[][..])
            .unwrap();
    };
    for (what, bytes) in [
        (
            "symlink",
            build(&link(tar::EntryType::Symlink, "/etc/passwd")),
        ),
        (
            "hard link",
            build(&link(tar::EntryType::Link, "/etc/passwd")),
        ),
        ("`..`", build(&escaping)),
        ("fifo", build(&fifo)),
    ] {
        let data = tempfile::tempdir().unwrap();
        let server = Server::start("200 OK", bytes.clone(), 1);
        let err = load_cifar10(data.path(), &options(&server.url, &md5_hex(&bytes)))
            .unwrap_err()
            .to_string();
        server.finish();
        assert!(err.contains("refusing to extract"), "{what}: {err}");
        assert!(
            listing(data.path()).is_empty(),
            "{what}: {:?}",
            listing(data.path())
        );
        assert!(!data.path().join("../escape.txt").exists());
    }
}
