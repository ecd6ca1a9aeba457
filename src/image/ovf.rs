//! OVF 1.0 descriptors (DMTF DSP0243) for the VMDK-based packages: the VirtualBox Vagrant
//! box (`box.ovf`) and the vSphere OVA. One virtual machine with 2 CPUs, memory, a SATA
//! controller holding the streamOptimized disk, and one NAT network card.
//!
//! Written from a template with quick-xml escaping the values; CIM `rasd:` elements are
//! in alphabetical order, as strict readers (ovftool) require in OVF 1.x.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Result;
use quick_xml::escape::escape;

use super::convert::Stats;
use super::progress::Progress;
use super::source::BlockSource;
use super::tarball::{append, finish_tar};

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
    pub name: &'a str,
    /// The disk's file name inside the package.
    pub disk_file: &'a str,
    /// The VMDK's length in bytes.
    pub disk_file_size: u64,
    /// The disk's virtual size in bytes.
    pub capacity: u64,
    pub memory_mib: u64,
    pub cpus: u32,
    /// The NIC's MAC address, 12 hex digits (Vagrant's `base_mac`).
    pub mac: &'a str,
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
    let (disk_file_size, capacity, memory, cpus, mac) =
        (m.disk_file_size, m.capacity, m.memory_mib, m.cpus, m.mac);
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
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>{mac}</rasd:Address>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
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
    progress: &mut Progress,
) -> Result<(Stats, File, u64)> {
    use sha2::Digest;
    let disk_name = format!("{stem}-disk1.vmdk");
    let (stats, disk, disk_len) =
        super::vmdk::write_temp(src, free, dir, &disk_name, mtime, progress)?;
    let mac = base_mac(&format!("{stem} {} {mtime}", src.virtual_size()));
    let ovf = descriptor(
        &Machine {
            name: stem,
            disk_file: &disk_name,
            disk_file_size: disk_len,
            capacity: src.virtual_size(),
            memory_mib: 1024,
            cpus: 1,
            mac: &mac,
        },
        Flavor::Vsphere,
    );
    let disk_sum = super::checksum::sha256_file(disk.path())?;
    let ovf_name = format!("{stem}.ovf");
    let mf = format!(
        "SHA256({ovf_name})= {}\nSHA256({disk_name})= {disk_sum}\n",
        hex::encode(sha2::Sha256::digest(ovf.as_bytes()))
    );
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
    append(&mut tar, &ovf_name, ovf.len() as u64, ovf.as_bytes(), mtime)?;
    append(
        &mut tar,
        &format!("{stem}.mf"),
        mf.len() as u64,
        mf.as_bytes(),
        mtime,
    )?;
    append(&mut tar, &disk_name, disk_len, disk.as_file(), mtime)?;
    let (file, len) = finish_tar(tar)?;
    Ok((stats, file, len))
}

/// A MAC address in VirtualBox's range (08:00:27), derived from `seed` so boxes are
/// reproducible; Vagrant sets the box's first NIC to it (`base_mac`).
pub fn base_mac(seed: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(seed.as_bytes());
    format!("080027{:02X}{:02X}{:02X}", d[0], d[1], d[2])
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
