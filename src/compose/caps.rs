//! File capabilities: rpm's text form (`cap_net_raw,cap_sys_admin=ep`) to the
//! `security.capability` xattr value (`struct vfs_cap_data`, revision 2).
//!
//! Hand-written: no maintained crate converts the text form without linking libcap.

use anyhow::{Result, bail};

/// Capability names in kernel order (linux/capability.h).
const CAPS: &[&str] = &[
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// Encodes `text` (cap_from_text syntax: clauses `names{=,+,-}flags`, space separated).
/// Returns None for an empty text (no capabilities).
pub fn encode(text: &str) -> Result<Option<Vec<u8>>> {
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(None);
    }
    let (mut perm, mut inh, mut eff) = (0u64, 0u64, false);
    for clause in text.split_whitespace() {
        let Some(pos) = clause.find(['=', '+', '-']) else {
            bail!("file capability {text:?}: clause {clause:?} has no =, + or -");
        };
        let (names, rest) = clause.split_at(pos);
        let mut mask = 0u64;
        for n in names.split(',').filter(|n| !n.is_empty()) {
            let n = n.to_ascii_lowercase();
            if n == "all" {
                mask |= (1u64 << CAPS.len()) - 1;
            } else if let Some(i) = CAPS.iter().position(|c| *c == n) {
                mask |= 1 << i;
            } else {
                bail!("file capability {text:?}: unknown capability {n:?}");
            }
        }
        // Operators apply left to right: `=ep`, `+i`, `-e`.
        let mut op = ' ';
        for ch in rest.chars() {
            match ch {
                '=' => {
                    op = '=';
                    perm &= !mask;
                    inh &= !mask;
                    if mask != 0 {
                        eff = false;
                    }
                }
                '+' | '-' => op = ch,
                'p' | 'i' | 'e' => {
                    let set = op != '-';
                    match ch {
                        'p' => perm = if set { perm | mask } else { perm & !mask },
                        'i' => inh = if set { inh | mask } else { inh & !mask },
                        _ => eff = set && mask != 0,
                    }
                }
                _ => bail!("file capability {text:?}: unknown flag {ch:?}"),
            }
        }
    }
    if perm == 0 && inh == 0 {
        return Ok(None);
    }
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    let magic = VFS_CAP_REVISION_2 | u32::from(eff);
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&(perm as u32).to_le_bytes());
    out.extend_from_slice(&(inh as u32).to_le_bytes());
    out.extend_from_slice(&((perm >> 32) as u32).to_le_bytes());
    out.extend_from_slice(&((inh >> 32) as u32).to_le_bytes());
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_setcap() {
        // `setcap cap_net_raw=ep f; getfattr -n security.capability -e hex f`
        // gives 0x0100000200200000000000000000000000000000.
        let v = encode("cap_net_raw=ep").unwrap().unwrap();
        assert_eq!(hex::encode(v), "0100000200200000000000000000000000000000");
        assert_eq!(encode("").unwrap(), None);
        assert_eq!(encode("=").unwrap(), None);
        let v = encode("cap_sys_ptrace,cap_sys_admin=ep").unwrap().unwrap();
        assert_eq!(
            u32::from_le_bytes(v[4..8].try_into().unwrap()),
            (1 << 19) | (1 << 21)
        );
        assert!(encode("cap_bogus=ep").is_err());
    }
}
