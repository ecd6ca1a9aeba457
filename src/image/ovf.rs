//! OVF 1.0 descriptors (DMTF DSP0243) for the VMDK-based packages: the VirtualBox Vagrant
//! box (`box.ovf`) and the vSphere OVA. One virtual machine with 2 CPUs, memory, a SATA
//! controller holding the streamOptimized disk, and one NAT network card.
//!
//! Written from a template with quick-xml escaping the values; CIM `rasd:` elements are
//! in alphabetical order, as strict readers (ovftool) require in OVF 1.x.

use std::fs::File;
use std::path::Path;

use anyhow::Result;
use quick_xml::escape::escape;

use super::convert::Stats;
use super::package::{Entry, write_tar};
use super::source::BlockSource;
use crate::progress::Task;

/// Who will import the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `VBoxManage import` (Vagrant's virtualbox provider).
    VirtualBox,
    /// vSphere / VMware Workstation (`ovftool`).
    Vsphere,
}

/// Everything the descriptor names.
pub struct Machine<'a> {
    /// The virtual machine's name.
    pub name: &'a str,
    /// The disk's file name inside the package.
    pub disk_file: &'a str,
    /// The VMDK's length in bytes.
    pub disk_file_size: u64,
    /// The disk's virtual size in bytes.
    pub capacity: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// The NIC's MAC address, 12 hex digits (Vagrant's `base_mac`).
    pub mac: &'a str,
}

/// One `<Item>` of the hardware section; `fields` are CIM `rasd:` elements (already
/// escaped), in alphabetical order.
fn item(fields: &[(&str, &str)]) -> String {
    debug_assert!(
        fields.is_sorted_by_key(|(k, _)| *k),
        "rasd elements out of order"
    );
    let mut xml = String::from("      <Item>\n");
    for (k, v) in fields {
        xml.push_str(&format!("        <rasd:{k}>{v}</rasd:{k}>\n"));
    }
    xml.push_str("      </Item>\n");
    xml
}

/// The OVF envelope for `m`.
pub fn descriptor(m: &Machine<'_>, flavor: Flavor) -> String {
    let name = escape(m.name);
    let disk_file = escape(m.disk_file);
    let system_type = match flavor {
        Flavor::VirtualBox => "virtualbox-2.2",
        Flavor::Vsphere => "vmx-10",
    };
    // CIM OS type 101: "Linux 2.6.x (64-bit)", the generic 64-bit Linux both importers map.
    let (os_id, os_desc) = (101, "Linux 2.6.x (64-bit)");
    let (disk_file_size, capacity) = (m.disk_file_size, m.capacity);
    let (cpus, memory) = (m.cpus.to_string(), m.memory_mib.to_string());
    let items: String = [
        vec![
            ("AllocationUnits", "hertz * 10^6"),
            ("Description", "Number of virtual CPUs"),
            ("ElementName", &format!("{cpus} virtual CPU")),
            ("InstanceID", "1"),
            ("ResourceType", "3"),
            ("VirtualQuantity", &cpus),
        ],
        vec![
            ("AllocationUnits", "byte * 2^20"),
            ("Description", "Memory Size"),
            ("ElementName", &format!("{memory} MB of memory")),
            ("InstanceID", "2"),
            ("ResourceType", "4"),
            ("VirtualQuantity", &memory),
        ],
        vec![
            ("Address", "0"),
            ("Caption", "sataController0"),
            ("Description", "SATA Controller"),
            ("ElementName", "sataController0"),
            ("InstanceID", "3"),
            ("ResourceSubType", "AHCI"),
            ("ResourceType", "20"),
        ],
        vec![
            ("AddressOnParent", "0"),
            ("Caption", "disk1"),
            ("Description", "Disk Image"),
            ("ElementName", "disk1"),
            ("HostResource", "ovf:/disk/vmdisk1"),
            ("InstanceID", "4"),
            ("Parent", "3"),
            ("ResourceType", "17"),
        ],
        vec![
            ("Address", m.mac),
            ("AutomaticAllocation", "true"),
            ("Caption", "Ethernet adapter on 'NAT'"),
            ("Connection", "NAT"),
            ("ElementName", "Ethernet adapter on 'NAT'"),
            ("InstanceID", "5"),
            ("ResourceSubType", "E1000"),
            ("ResourceType", "10"),
        ],
    ]
    .iter()
    .map(|fields| item(fields))
    .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{disk_file}" ovf:id="file1" ovf:size="{disk_file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="NAT">
      <Description>The NAT network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="{os_id}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{os_desc}</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>{system_type}</vssd:VirtualSystemType>
      </System>
{items}    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// A MAC address in VirtualBox's range (08:00:27), derived from `seed` so packages are
/// reproducible; Vagrant sets the box's first NIC to it (`base_mac`).
pub fn base_mac(seed: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(seed.as_bytes());
    format!("080027{:02X}{:02X}{:02X}", d[0], d[1], d[2])
}

/// The descriptor of a package (1 CPU, 1 GiB) holding the disk `disk_file` of `disk_len`
/// bytes, a `capacity`-byte disk; the NIC's MAC is derived from the name, size and time.
/// Returns the descriptor and the MAC.
pub fn package_descriptor(
    name: &str,
    disk_file: &str,
    disk_len: u64,
    capacity: u64,
    mtime: u64,
    flavor: Flavor,
) -> (String, String) {
    let mac = base_mac(&format!("{name} {capacity} {mtime}"));
    let machine = Machine {
        name,
        disk_file,
        disk_file_size: disk_len,
        capacity,
        memory_mib: 1024,
        cpus: 1,
        mac: &mac,
    };
    (descriptor(&machine, flavor), mac)
}

/// Writes an OVA into `out`: `<stem>.ovf` first (as OVF requires), `<stem>.mf` with the
/// SHA-256 of the other two, then `<stem>-disk1.vmdk` (streamOptimized).
pub fn write_ova(
    src: &dyn BlockSource,
    free: &[(u64, u64)],
    out: File,
    dir: &Path,
    stem: &str,
    mtime: u64,
    progress: &Task,
) -> Result<(Stats, File, u64)> {
    use sha2::Digest;
    let disk_name = format!("{stem}-disk1.vmdk");
    let (stats, disk, disk_len) =
        super::vmdk::write_temp(src, free, dir, &disk_name, mtime, progress)?;
    let (ovf, _) = package_descriptor(
        stem,
        &disk_name,
        disk_len,
        src.virtual_size(),
        mtime,
        Flavor::Vsphere,
    );
    let disk_sum = super::checksum::sha256_file(disk.path())?;
    let ovf_name = format!("{stem}.ovf");
    let mf = format!(
        "SHA256({ovf_name})= {}\nSHA256({disk_name})= {disk_sum}\n",
        hex::encode(sha2::Sha256::digest(ovf.as_bytes()))
    );
    let (file, len) = write_tar(
        out,
        &[
            (&ovf_name, Entry::Bytes(ovf.as_bytes())),
            (&format!("{stem}.mf"), Entry::Bytes(mf.as_bytes())),
            (&disk_name, Entry::File(disk.as_file(), disk_len)),
        ],
        mtime,
    )?;
    Ok((stats, file, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_is_well_formed_and_references_the_disk() {
        let m = Machine {
            name: "demo <1>",
            disk_file: "box-disk001.vmdk",
            disk_file_size: 1234,
            capacity: 3 << 30,
            memory_mib: 1024,
            cpus: 2,
            mac: "080027AABBCC",
        };
        let xml = descriptor(&m, Flavor::VirtualBox);
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut names = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                    names.push(e.name().0.to_owned())
                }
                _ => {}
            }
        }
        assert!(names.contains(&"DiskSection".to_owned()));
        assert!(xml.contains("ovf:href=\"box-disk001.vmdk\""));
        assert!(xml.contains("ovf:size=\"1234\""));
        assert!(xml.contains("demo &lt;1&gt;"));
        assert!(xml.contains("virtualbox-2.2"));
        assert!(descriptor(&m, Flavor::Vsphere).contains("vmx-10"));
    }
}
