//! Vagrant boxes: a tar of the disk, `metadata.json` and a `Vagrantfile`, the layout
//! `vagrant box add` unpacks: for libvirt `box.img` (qcow2, vagrant-libvirt's box format v1),
//! for VirtualBox `box.ovf` plus a streamOptimized VMDK, as `VBoxManage export` makes them.
//!
//! The tar is not compressed (see `package`): the qcow2 inside already is, cluster by
//! cluster, and Vagrant takes plain tar.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};

use super::compress::Codec;
use super::convert::{self, Stats};
use super::package::{Entry, write_tar};
use super::qcow2_write::Qcow2Writer;
use super::source::BlockSource;
use crate::progress::Task;

/// What vagrant-libvirt reads from `metadata.json`: the disk format and its size in GiB
/// (rounded up), from which it sizes the domain's disk.
pub fn libvirt_metadata(virtual_size: u64) -> String {
    let gib = virtual_size.div_ceil(1 << 30);
    format!("{{\"provider\": \"libvirt\", \"format\": \"qcow2\", \"virtual_size\": {gib}}}\n")
}

/// The box's Vagrantfile: the defaults a `vagrant init` of this box starts from.
pub const LIBVIRT_VAGRANTFILE: &str = r#"# Defaults for this box; a project's own Vagrantfile overrides them.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "kvm"
  end
end
"#;

/// Writes a vagrant-libvirt box into `out`: the disk goes to a qcow2 in a temporary file in
/// `dir` first (its header is written last, so it cannot stream into the tar directly), then
/// the tar is written. Returns the loop's stats, the synced box and its length.
#[allow(clippy::too_many_arguments)]
pub fn write_libvirt(
    src: &dyn BlockSource,
    free: &[(u64, u64)],
    codec: Option<Codec>,
    out: File,
    dir: &Path,
    mtime: u64,
    progress: &Task,
) -> Result<(Stats, File, u64)> {
    let size = src.virtual_size();
    let mut img = tempfile::Builder::new()
        .prefix(".box.img.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let file = img
        .as_file()
        .try_clone()
        .context("opening the temporary disk")?;
    let mut w = Qcow2Writer::new(file, size, codec)?;
    let stats = convert::run(src, free, codec, &mut w, progress)?;
    let (_, img_len) = w.finish()?;
    img.as_file_mut()
        .seek(SeekFrom::Start(0))
        .context("rewinding the temporary disk")?;
    let meta = libvirt_metadata(size);
    let (file, len) = write_tar(
        out,
        &[
            ("box.img", Entry::File(img.as_file(), img_len)),
            ("metadata.json", Entry::Bytes(meta.as_bytes())),
            ("Vagrantfile", Entry::Bytes(LIBVIRT_VAGRANTFILE.as_bytes())),
        ],
        mtime,
    )?;
    Ok((stats, file, len))
}

/// Writes a vagrant-virtualbox box into `out`: `box.ovf`, `box-disk001.vmdk`
/// (streamOptimized), `metadata.json` and a `Vagrantfile` with the OVF's MAC as `base_mac`.
#[allow(clippy::too_many_arguments)]
pub fn write_virtualbox(
    src: &dyn BlockSource,
    free: &[(u64, u64)],
    out: File,
    dir: &Path,
    name: &str,
    mtime: u64,
    progress: &Task,
) -> Result<(Stats, File, u64)> {
    const DISK: &str = "box-disk001.vmdk";
    let (stats, disk, disk_len) = super::vmdk::write_temp(src, free, dir, DISK, mtime, progress)?;
    let (ovf, mac) = super::ovf::package_descriptor(
        name,
        DISK,
        disk_len,
        src.virtual_size(),
        mtime,
        super::ovf::Flavor::VirtualBox,
    );
    let meta = "{\"provider\": \"virtualbox\"}\n";
    let vagrantfile = format!(
        "# Defaults for this box; a project's own Vagrantfile overrides them.\n\
         Vagrant.configure(\"2\") do |config|\n  config.vm.base_mac = \"{mac}\"\nend\n"
    );
    let (file, len) = write_tar(
        out,
        &[
            ("box.ovf", Entry::Bytes(ovf.as_bytes())),
            (DISK, Entry::File(disk.as_file(), disk_len)),
            ("metadata.json", Entry::Bytes(meta.as_bytes())),
            ("Vagrantfile", Entry::Bytes(vagrantfile.as_bytes())),
        ],
        mtime,
    )?;
    Ok((stats, file, len))
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_rounds_the_size_up_to_whole_gib() {
        let m: serde_json::Value =
            serde_json::from_str(&super::libvirt_metadata((3 << 30) + 1)).unwrap();
        assert_eq!(m["provider"], "libvirt");
        assert_eq!(m["format"], "qcow2");
        assert_eq!(m["virtual_size"], 4);
    }
}
