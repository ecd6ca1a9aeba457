//! The image definition (`IMAGE.yaml`): what to compose, how to install it and how to judge it.
//!
//! HACKING: to add a key, add the field (with a default when optional) to the section struct,
//! mention it in `kickstarts/*/image.yaml` when it matters there, and add a parser test below.
//! Relative paths are relative to the YAML file; [`ImageDefinition::load`] resolves them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::image::{Compression, OutputFormat};
use crate::vm::accel::AccelChoice;

/// One image, as `kickstarts/<image>/image.yaml` describes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDefinition {
    /// Short name, used for output file names.
    pub name: String,
    /// `compose:`: the treefile, deltas and pruning.
    #[serde(default)]
    pub compose: ComposeSection,
    /// `ostree:`: the deployment the installer sets up.
    pub ostree: OstreeSection,
    /// `kickstart:`: the template and its variables.
    #[serde(default)]
    pub kickstart: KickstartSection,
    /// How to boot the installer; required by `install`, not by `kickstart render`.
    #[serde(default)]
    pub installer: Option<InstallerSection>,
    /// `vm:`: the install VM.
    #[serde(default)]
    pub vm: VmSection,
    /// `postprocess:`: the published formats.
    #[serde(default)]
    pub postprocess: PostprocessSection,
    /// `boot_test:`: what a good boot prints.
    #[serde(default)]
    pub boot_test: BootTestSection,
    /// `upgrade_test:`: upgrading the previous image to the new commit.
    #[serde(default)]
    pub upgrade_test: UpgradeTestSection,
    /// Sign what the build publishes; without it commits and summary are unsigned.
    #[serde(default)]
    pub signing: Option<SigningSection>,
    /// The directory of the YAML file; relative paths above are relative to it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `compose:`: what to compose and what to do with the repository afterwards.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeSection {
    /// rpm-ostree treefile; the ref comes from its `ref:` key.
    #[serde(default = "default_treefile")]
    pub treefile: PathBuf,
    /// Static deltas to each new commit: `empty` (from scratch), `previous` (from its parent)
    /// or N (from its Nth ancestor; 1 is the parent), generated unless they exist.
    #[serde(default)]
    pub deltas: Vec<DeltaSource>,
    /// A prune policy file (`refs: {REF: {keep: all | time:90d | depth:5 | delete}}`)
    /// applied after the deltas, before the summary is written.
    #[serde(default)]
    pub prune: Option<PathBuf>,
}

impl Default for ComposeSection {
    fn default() -> Self {
        Self {
            treefile: default_treefile(),
            deltas: Vec::new(),
            prune: None,
        }
    }
}

/// Where a static delta to the new commit starts (`compose.deltas`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum DeltaSource {
    /// `empty` or `previous`.
    Named(String),
    /// The Nth ancestor of the new commit.
    Ancestor(u32),
}

impl DeltaSource {
    /// How many parents back the delta starts: None for a from-scratch delta.
    pub fn generations(&self) -> Result<Option<u32>> {
        match self {
            DeltaSource::Named(n) if n == "empty" => Ok(None),
            DeltaSource::Named(n) if n == "previous" => Ok(Some(1)),
            DeltaSource::Ancestor(n) if *n >= 1 => Ok(Some(*n)),
            other => bail!(
                "compose.deltas: {other:?} is not `empty`, `previous` or a number of commits \
                 back (1 or more)"
            ),
        }
    }
}

fn default_treefile() -> PathBuf {
    PathBuf::from("treefile.yaml")
}

/// Where the installed system's ostree deployment comes from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OstreeSection {
    /// The stateroot (`ostreesetup --osname`).
    pub osname: String,
    /// The remote name written into the installed system; defaults to `osname`.
    #[serde(default)]
    pub remote: Option<String>,
    /// The ref to deploy; normally filled by the pipeline from the treefile.
    #[serde(default, rename = "ref")]
    pub ref_: Option<String>,
    /// The repository URL the installer pulls from; normally the install server's.
    #[serde(default)]
    pub url: Option<String>,
}

impl OstreeSection {
    /// The remote name, defaulting to the osname as pykickstart does.
    pub fn remote_name(&self) -> &str {
        self.remote.as_deref().unwrap_or(&self.osname)
    }
}

/// `kickstart:`: how the kickstart is rendered and linted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KickstartSection {
    /// The minijinja template, relative to the image definition.
    #[serde(default = "default_template")]
    pub template: PathBuf,
    /// Variables for the template (any YAML value).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Extra directories searched for partials after the template's own directory and the
    /// project's `templates/` (found by walking up from the image definition).
    #[serde(default)]
    pub template_dirs: Vec<PathBuf>,
    /// pykickstart syntax version the rendered kickstart is linted against.
    #[serde(default = "default_ks_version")]
    pub version: String,
}

impl Default for KickstartSection {
    fn default() -> Self {
        Self {
            template: default_template(),
            vars: BTreeMap::new(),
            template_dirs: Vec::new(),
            version: default_ks_version(),
        }
    }
}

fn default_template() -> PathBuf {
    PathBuf::from("ks.cfg.j2")
}

fn default_ks_version() -> String {
    "DEVEL".to_string()
}

/// The installer to boot: a kernel and initrd pair, or a boot.iso.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstallerSection {
    /// The installer kernel (with `initrd`).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The installer initrd (with `kernel`).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// A boot.iso, instead of `kernel` and `initrd`.
    #[serde(default)]
    pub iso: Option<PathBuf>,
    /// Extra kernel arguments appended to the installer's command line.
    #[serde(default)]
    pub append: Option<String>,
}

/// The installer boot media, checked: exactly one of the two forms.
#[derive(Debug, Clone, PartialEq)]
pub enum InstallerMedia {
    /// Boot a kernel with its initrd.
    KernelInitrd {
        /// The installer kernel.
        kernel: PathBuf,
        /// Its initrd.
        initrd: PathBuf,
    },
    /// Boot an ISO.
    Iso(PathBuf),
}

impl InstallerSection {
    /// The boot media, or an error saying which keys are missing or in conflict.
    pub fn media(&self) -> Result<InstallerMedia> {
        match (&self.kernel, &self.initrd, &self.iso) {
            (Some(k), Some(i), None) => Ok(InstallerMedia::KernelInitrd {
                kernel: k.clone(),
                initrd: i.clone(),
            }),
            (None, None, Some(iso)) => Ok(InstallerMedia::Iso(iso.clone())),
            (_, _, Some(_)) => {
                bail!("installer: give either `iso` or `kernel` + `initrd`, not both")
            }
            (Some(_), None, None) => bail!("installer: `kernel` needs an `initrd` too"),
            (None, Some(_), None) => bail!("installer: `initrd` needs a `kernel` too"),
            (None, None, None) => {
                bail!("installer: give `iso: boot.iso` or `kernel:` and `initrd:`")
            }
        }
    }
}

/// `vm:`: the install VM's size and limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmSection {
    /// Guest memory in MiB.
    pub memory: u32,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Size of the target disk, as `qemu-img create` takes it (e.g. `3G`).
    pub disk_size: String,
    /// `auto` (the default), `kvm` or `tcg`, as `install --accel` takes it.
    pub accel: AccelChoice,
    /// Overall install timeout in seconds.
    pub timeout: u64,
    /// Seconds without disk, network or log activity before the install counts as hung.
    pub inactivity_timeout: u64,
}

impl Default for VmSection {
    fn default() -> Self {
        Self {
            memory: 2048,
            cpus: 2,
            disk_size: "10G".to_string(),
            accel: AccelChoice::Auto,
            timeout: 1800,
            inactivity_timeout: 300,
        }
    }
}

/// `postprocess:`: which images the build publishes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostprocessSection {
    /// Cluster compression of the qcow2 outputs; `zstd` by default
    /// ([`Compression::BUILD_DEFAULT`] says why it differs from `postprocess`'s).
    pub compression: Compression,
    /// The formats to write, by the names `postprocess --format` takes; the first is the
    /// main image.
    pub formats: Vec<OutputFormat>,
    /// The subformat of the `vmdk` format (`--vmdk-subformat`).
    pub vmdk_subformat: crate::image::vmdk::Subformat,
}

impl Default for PostprocessSection {
    fn default() -> Self {
        Self {
            compression: Compression::BUILD_DEFAULT,
            formats: vec![OutputFormat::Qcow2],
            vmdk_subformat: crate::image::vmdk::Subformat::StreamOptimized,
        }
    }
}

/// `boot_test:`: how a boot of the image is judged.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootTestSection {
    /// Console lines that must all appear for the boot to pass.
    pub expect: Vec<String>,
    /// Seconds to wait for them.
    pub timeout: u64,
}

/// `upgrade_test:`: how the previous image is upgraded to the new commit (when there is one).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeTestSection {
    /// Seconds for each boot and each guest command.
    pub timeout: u64,
    /// Seconds of console silence that fail a step.
    pub inactivity_timeout: u64,
    /// kola-style external tests run in the guest (relative to the YAML file).
    pub tests: Option<PathBuf>,
    /// Run them again after the upgrade.
    pub tests_after_upgrade: bool,
}

impl Default for UpgradeTestSection {
    fn default() -> Self {
        Self {
            timeout: 300,
            inactivity_timeout: 120,
            tests: None,
            tests_after_upgrade: false,
        }
    }
}

impl Default for BootTestSection {
    fn default() -> Self {
        Self {
            expect: Vec::new(),
            timeout: 300,
        }
    }
}

/// The key that signs the build's commits and summary (`ostree gpg-sign`, `summary
/// --gpg-sign`). Its public half is shipped in the tree at `keypath`, and the kickstart
/// templates see `signing.keypath` to set up the installed remote with gpg verification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    /// Key id, fingerprint or user id, as `--gpg-sign` takes it.
    pub key: String,
    /// GnuPG home holding the secret key (relative to the definition). Without it and
    /// without `key_file`, `$GNUPGHOME` or `~/.gnupg`, as `ostree` does.
    #[serde(default)]
    pub gpg_homedir: Option<PathBuf>,
    /// An armored secret key file (`gpg --export-secret-keys --armor`) instead of a home.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A file whose first line is the secret key's passphrase (relative to the definition),
    /// for a protected key. Keep it out of the image definition's repository.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// Where the public key goes in the tree; default `/etc/pki/ostree/<remote>.gpg`.
    #[serde(default)]
    pub keypath: Option<String>,
}

impl SigningSection {
    /// The public key's path in the installed system.
    pub fn keypath(&self, remote: &str) -> String {
        self.keypath
            .clone()
            .unwrap_or_else(|| format!("/etc/pki/ostree/{remote}.gpg"))
    }

    /// Where the secret key is read from, with paths resolved against the definition.
    pub fn key_source(&self, def: &ImageDefinition) -> Result<crate::ostree::sign::KeySource> {
        let homedir = self.gpg_homedir.as_ref().map(|p| def.resolve(p));
        let key_file = self.key_file.as_ref().map(|p| def.resolve(p));
        crate::ostree::sign::KeySource::from_flags(homedir.as_deref(), key_file.as_deref())
            .context("signing: finding the secret key (set `gpg_homedir` or `key_file`)")
    }

    /// Loads the secret key, unlocked with `passphrase_file` if it is protected.
    pub fn signer(&self, def: &ImageDefinition) -> Result<crate::ostree::gpg::Signer> {
        let passphrase = self
            .passphrase_file
            .as_ref()
            .map(|p| crate::ostree::gpg::Passphrase::from_file(&def.resolve(p)))
            .transpose()?;
        self.key_source(def)?.signer(&self.key, passphrase.as_ref())
    }

    fn validate(&self) -> Result<()> {
        if self.key.trim().is_empty() {
            bail!("signing.key must name a key (id, fingerprint or user id)");
        }
        if self.gpg_homedir.is_some() && self.key_file.is_some() {
            bail!("signing: give `gpg_homedir` or `key_file`, not both");
        }
        if let Some(path) = &self.keypath {
            let rest = path
                .strip_prefix("/etc/")
                .or_else(|| path.strip_prefix("/usr/"));
            let bad =
                rest.is_none_or(|r| r.split('/').any(|c| c.is_empty() || c == "." || c == ".."));
            if bad {
                bail!(
                    "signing.keypath {path:?} must be a file path under /etc or /usr without `..` (it is added to the tree)"
                );
            }
        }
        Ok(())
    }
}

impl ImageDefinition {
    /// Parse a definition from YAML text; `origin` names the file in errors
    /// (`origin:LINE:COLUMN: what is wrong`). Paths stay as written.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let def: ImageDefinition = serde_saphyr::from_str(text).map_err(|e| {
            let name = origin.display().to_string();
            let rendered = e.render_with_options(serde_saphyr::render_options! {
                source_name: Some(name.as_str()),
                snippets: serde_saphyr::SnippetMode::Off,
            });
            match e.location() {
                Some(loc) if loc.line() > 0 => {
                    // Quote the offending line: some messages ("invalid u32") omit the value.
                    let quoted = text
                        .lines()
                        .nth(loc.line() as usize - 1)
                        .map(|l| format!(" in `{}`", l.trim()))
                        .unwrap_or_default();
                    anyhow::anyhow!(
                        "{name}:{}:{}: {}{quoted}",
                        loc.line(),
                        loc.column(),
                        strip_location_suffix(&rendered)
                    )
                }
                _ => anyhow::anyhow!("{name}: {rendered}"),
            }
        })?;
        def.validate()
            .with_context(|| format!("checking image definition {}", origin.display()))?;
        Ok(def)
    }

    /// Read a definition file and resolve its relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading image definition {}", path.display()))?;
        let mut def = Self::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        def.base_dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        Ok(def)
    }

    /// What the kickstart is rendered from.
    pub fn render_input(&self) -> crate::kickstart::RenderInput {
        crate::kickstart::RenderInput {
            template: self.resolve(&self.kickstart.template),
            template_dirs: self
                .kickstart
                .template_dirs
                .iter()
                .map(|d| self.resolve(d))
                .collect(),
            base_dir: self.base_dir.clone(),
            vars: self.kickstart.vars.clone(),
            image_name: self.name.clone(),
            osname: self.ostree.osname.clone(),
            remote: self.ostree.remote_name().to_string(),
            url: self.ostree.url.clone(),
            ostree_ref: self.ostree.ref_.clone(),
            signing_keypath: self
                .signing
                .as_ref()
                .map(|s| s.keypath(self.ostree.remote_name())),
        }
    }

    /// The `ref:` of the compose treefile when `ostree.ref` is not set and the treefile
    /// exists (`kickstart render` outside a build).
    pub fn treefile_ref(&self) -> Result<Option<String>> {
        if self.ostree.ref_.is_some() {
            return Ok(None);
        }
        let path = self.resolve(&self.compose.treefile);
        if !path.exists() {
            return Ok(None);
        }
        crate::compose::treefile::read_ref(&path)
    }

    /// A path from the definition, relative to the definition's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Checks serde cannot express.
    fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains(['/', ' ']) {
            bail!(
                "name {:?} must be non-empty without '/' or spaces (it names output files)",
                self.name
            );
        }
        if self.ostree.osname.is_empty() {
            bail!("ostree.osname must not be empty");
        }
        if let Some(installer) = &self.installer {
            installer.media()?;
        }
        if self.vm.memory < 256 {
            bail!(
                "vm.memory is {} MiB; the installer needs at least 256",
                self.vm.memory
            );
        }
        if self.vm.cpus == 0 {
            bail!("vm.cpus must be at least 1");
        }
        if let Some(signing) = &self.signing {
            signing.validate()?;
        }
        for d in &self.compose.deltas {
            d.generations()?;
        }
        Ok(())
    }
}

/// serde-saphyr appends " at line L column C" to plain messages; we already lead with it.
fn strip_location_suffix(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "\
name: demo
compose: { treefile: treefile.yaml }
ostree: { osname: standin, remote: standin }
kickstart: { template: ks.cfg.j2, vars: { hostname: demo } }
installer: { kernel: ../../vm/out/standin/vmlinuz, initrd: ../../vm/out/standin/installer.img }
vm: { memory: 1024, cpus: 1, disk_size: 3G, accel: auto, timeout: 900, inactivity_timeout: 180 }
postprocess: { compression: zstd, formats: [qcow2] }
boot_test: { expect: [\"STANDIN-OSTREE-BOOT-OK\"], timeout: 300 }
";

    fn parse(text: &str) -> Result<ImageDefinition> {
        ImageDefinition::parse(text, Path::new("kickstarts/demo/image.yaml"))
    }

    #[test]
    fn full_definition_parses() {
        let def = parse(VALID).unwrap();
        assert_eq!(def.name, "demo");
        assert_eq!(def.ostree.remote_name(), "standin");
        assert_eq!(def.vm.memory, 1024);
        assert_eq!(def.vm.accel, AccelChoice::Auto);
        assert_eq!(def.postprocess.formats, vec![OutputFormat::Qcow2]);
        assert_eq!(def.boot_test.expect, vec!["STANDIN-OSTREE-BOOT-OK"]);
        assert_eq!(def.kickstart.vars["hostname"], serde_json::json!("demo"));
        assert!(matches!(
            def.installer.unwrap().media().unwrap(),
            InstallerMedia::KernelInitrd { .. }
        ));
    }

    #[test]
    fn an_unknown_format_lists_the_known_ones() {
        let text = VALID.replace("formats: [qcow2]", "formats: [qcow2, vhdx]");
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains("vhdx"), "{err}");
        for known in ["qcow2", "raw.xz", "vhdfixed.xz", "gce", "vagrant-libvirt"] {
            assert!(err.contains(known), "{known} missing from: {err}");
        }
        let text = VALID.replace("formats: [qcow2]", "formats: [qcow2, vhdfixed.xz, gce]");
        assert_eq!(
            parse(&text).unwrap().postprocess.formats,
            [
                OutputFormat::Qcow2,
                OutputFormat::VhdfixedXz,
                OutputFormat::Gce
            ]
        );
    }

    #[test]
    fn vmdk_subformat_defaults_to_stream_optimized_and_takes_qemu_names() {
        use crate::image::vmdk::Subformat;
        assert_eq!(
            parse(VALID).unwrap().postprocess.vmdk_subformat,
            Subformat::StreamOptimized
        );
        let text = VALID.replace(
            "formats: [qcow2]",
            "formats: [vmdk, ova], vmdk_subformat: monolithicSparse",
        );
        assert_eq!(
            parse(&text).unwrap().postprocess.vmdk_subformat,
            Subformat::MonolithicSparse
        );
        let text = VALID.replace("formats: [qcow2]", "formats: [vmdk], vmdk_subformat: flat");
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains("monolithicSparse"), "{err}");
    }

    #[test]
    fn optional_sections_default() {
        let def = parse("name: x\nostree: { osname: fedora }\n").unwrap();
        assert_eq!(def.compose.treefile, PathBuf::from("treefile.yaml"));
        assert_eq!(def.kickstart.template, PathBuf::from("ks.cfg.j2"));
        assert_eq!(def.ostree.remote_name(), "fedora");
        assert_eq!(def.vm, VmSection::default());
        assert!(def.installer.is_none());
    }

    /// Each bad document and the `file:line:column` plus words its error must carry.
    #[test]
    fn errors_name_file_line_and_column() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "unknown top-level key",
                "name: x\nostree: { osname: a }\ncolour: blue\n",
                &["image.yaml:3:1", "colour"],
            ),
            (
                "unknown key in a section",
                "name: x\nostree:\n  osname: a\n  remtoe: b\n",
                &["image.yaml:4:3", "remtoe"],
            ),
            (
                "wrong type",
                "name: x\nostree: { osname: a }\nvm:\n  memory: lots\n",
                &["image.yaml:4:11", "invalid u32", "memory: lots"],
            ),
            (
                "bad enum value",
                "name: x\nostree: { osname: a }\nvm: { accel: hvf }\n",
                &["image.yaml:3:", "hvf"],
            ),
            (
                "missing required section",
                "name: x\n",
                &["image.yaml:1:1", "missing field `ostree`"],
            ),
            (
                "yaml syntax",
                "name: x\nostree: { osname: a\n",
                &["image.yaml:2:9", "unclosed bracket"],
            ),
        ];
        for (what, text, needles) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            for needle in *needles {
                assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn installer_needs_one_form() {
        let err = parse("name: x\nostree: { osname: a }\ninstaller: { kernel: k }\n").unwrap_err();
        assert!(format!("{err:#}").contains("needs an `initrd`"), "{err:#}");
        let err =
            parse("name: x\nostree: { osname: a }\ninstaller: { kernel: k, initrd: i, iso: b }\n")
                .unwrap_err();
        assert!(format!("{err:#}").contains("not both"), "{err:#}");
        let def = parse("name: x\nostree: { osname: a }\ninstaller: { iso: boot.iso }\n").unwrap();
        assert_eq!(
            def.installer.unwrap().media().unwrap(),
            InstallerMedia::Iso("boot.iso".into())
        );
    }

    #[test]
    fn signing_section_parses_and_checks_keypath() {
        let def = parse(
            "name: x\nostree: { osname: a, remote: r }\nsigning: { key: builder@example.org, gpg_homedir: keys }\n",
        )
        .unwrap();
        let signing = def.signing.unwrap();
        assert_eq!(signing.keypath("r"), "/etc/pki/ostree/r.gpg");
        assert_eq!(signing.gpg_homedir, Some(PathBuf::from("keys")));
        for bad in [
            "etc/key",
            "/var/lib/key",
            "/etc/../root/key",
            "/etc/pki/",
            "/usr//k",
        ] {
            let text = format!(
                "name: x\nostree: {{ osname: a }}\nsigning: {{ key: k, keypath: \"{bad}\" }}\n"
            );
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains("signing.keypath"), "{bad}: {err}");
        }
        let err = parse(
            "name: x\nostree: { osname: a }\nsigning: { key: k, gpg_homedir: h, key_file: f }\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not both"), "{err:#}");
        let err =
            parse("name: x\nostree: { osname: a }\nsigning: { gpg_homedir: h }\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("missing field `key`"),
            "{err:#}"
        );
    }

    #[test]
    fn load_resolves_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.yaml");
        std::fs::write(&path, VALID).unwrap();
        let def = ImageDefinition::load(&path).unwrap();
        assert_eq!(
            def.resolve(&def.kickstart.template),
            dir.path().join("ks.cfg.j2")
        );
    }
}
