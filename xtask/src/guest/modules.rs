//! Kernel module dependencies: `modules.dep` when the package ships it, the
//! `depends=` field of each module's `.modinfo` section when it does not
//! (Debian generates `modules.dep` with depmod at install time), and
//! `modules.builtin` for what needs no loading.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

/// A loadable module: its path below `lib/modules/<release>/` and the
/// names of the modules it needs loaded first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Normalised name (`-` written as `_`), e.g. `virtio_net`.
    pub name: String,
    /// Path relative to the release's module directory, e.g. `kernel/drivers/net/virtio_net.ko.xz`.
    pub path: String,
    /// Names of the modules this one depends on.
    pub deps: Vec<String>,
}

/// The module name a path denotes: file name without `.ko[.xz|.zst|.gz]`,
/// with `-` normalised to `_` as the kernel does.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = ["", ".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(&format!(".ko{ext}")))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// Parses `modules.dep` (`path: dep-path dep-path ...` per line).
pub fn parse_modules_dep(text: &str) -> Result<BTreeMap<String, Module>> {
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((path, deps)) = line.split_once(':') else {
            bail!("modules.dep line {}: no `:` in {line:?}", i + 1);
        };
        let name = module_name(path.trim()).with_context(|| {
            format!("modules.dep line {}: {path:?} is not a module path", i + 1)
        })?;
        let deps = deps
            .split_whitespace()
            .map(|d| {
                module_name(d).with_context(|| {
                    format!("modules.dep line {}: {d:?} is not a module path", i + 1)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        map.insert(
            name.clone(),
            Module {
                name,
                path: path.trim().to_string(),
                deps,
            },
        );
    }
    Ok(map)
}

/// Names of the built-in modules listed in `modules.builtin`.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| module_name(l.trim())).collect()
}

/// The load order for `wanted`: every module after the ones it depends on,
/// each once; built-in modules are skipped. `lookup` finds a module by name
/// (`None`: the package has no such module).
pub fn resolve(
    wanted: &[&str],
    builtin: &BTreeSet<String>,
    mut lookup: impl FnMut(&str) -> Result<Option<Module>>,
) -> Result<Vec<Module>> {
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        needed_by: Option<&str>,
        builtin: &BTreeSet<String>,
        lookup: &mut dyn FnMut(&str) -> Result<Option<Module>>,
        marks: &mut BTreeMap<String, Mark>,
        order: &mut Vec<Module>,
    ) -> Result<()> {
        let name = name.replace('-', "_");
        match marks.get(&name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => bail!("module dependency cycle through `{name}`"),
            None => {}
        }
        if builtin.contains(&name) {
            marks.insert(name, Mark::Done);
            return Ok(());
        }
        let Some(module) = lookup(&name)? else {
            let by = needed_by.map_or_else(String::new, |b| format!(" (needed by `{b}`)"));
            bail!("kernel module `{name}`{by} is neither in the package's modules nor built in (modules.builtin)");
        };
        marks.insert(name.clone(), Mark::Visiting);
        for dep in &module.deps {
            visit(dep, Some(&name), builtin, lookup, marks, order)?;
        }
        marks.insert(name, Mark::Done);
        order.push(module);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut order = Vec::new();
    for w in wanted {
        visit(w, None, builtin, &mut lookup, &mut marks, &mut order)?;
    }
    Ok(order)
}

/// A `modules.dep` for the modules of `order` (a load order from
/// [`resolve`]), with each dependency list in the order modprobe expects
/// (the last entry is loaded first). `path` maps a module to the path it
/// has in the image.
pub fn render_modules_dep(order: &[Module], path: impl Fn(&Module) -> String) -> String {
    let position: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut text = String::new();
    for (i, m) in order.iter().enumerate() {
        // Transitive closure of m's dependencies, in load order.
        let mut needed = BTreeSet::new();
        let mut stack: Vec<&str> = m.deps.iter().map(String::as_str).collect();
        while let Some(d) = stack.pop() {
            if let Some(&p) = position.get(d) {
                if p < i && needed.insert(p) {
                    stack.extend(order[p].deps.iter().map(String::as_str));
                }
            }
        }
        text.push_str(&path(m));
        text.push(':');
        for p in needed.iter().rev() {
            text.push(' ');
            text.push_str(&path(&order[*p]));
        }
        text.push('\n');
    }
    text
}

fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], off: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?)).ok()
}

/// The contents of the ELF64 (little-endian) section called `wanted`.
fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return None;
    }
    let shoff = le_u64(elf, 0x28)?;
    let shentsize = usize::from(le_u16(elf, 0x3a)?);
    let shnum = usize::from(le_u16(elf, 0x3c)?);
    let shstrndx = usize::from(le_u16(elf, 0x3e)?);
    if shentsize < 0x28 {
        return None;
    }
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            le_u32(elf, base)?,
            le_u64(elf, base + 0x18)?,
            le_u64(elf, base + 0x20)?,
        ))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let names = elf.get(str_off..str_off.checked_add(str_size)?)?;
    (0..shnum).find_map(|i| {
        let (name, off, size) = section(i)?;
        let name = names.get(name as usize..)?;
        let end = name.iter().position(|&b| b == 0)?;
        (&name[..end] == wanted.as_bytes()).then(|| elf.get(off..off.checked_add(size)?))?
    })
}

/// The `depends=` list of a kernel module (ELF64 `.ko`, uncompressed).
pub fn modinfo_depends(ko: &[u8], what: &str) -> Result<Vec<String>> {
    let info = elf_section(ko, ".modinfo").with_context(|| {
        format!("{what}: not a 64-bit little-endian ELF module with a .modinfo section")
    })?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
kernel/drivers/virtio/virtio_mmio.ko.xz:
kernel/drivers/block/virtio_blk.ko.xz:
kernel/drivers/char/hw_random/virtio-rng.ko.xz:
";

    fn resolve_in(
        map: &BTreeMap<String, Module>,
        wanted: &[&str],
        builtin: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        Ok(resolve(wanted, builtin, |n| Ok(map.get(n).cloned()))?
            .into_iter()
            .map(|m| m.name)
            .collect())
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name("kernel/a/virtio-rng.ko.xz").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(module_name("x.ko").as_deref(), Some("x"));
        assert_eq!(module_name("x.ko.zst").as_deref(), Some("x"));
        assert_eq!(module_name("x.o"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn dependencies_load_first() {
        let map = parse_modules_dep(DEP).unwrap();
        let order = resolve_in(
            &map,
            &["virtio_mmio", "virtio_net", "virtio_blk"],
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(
            order,
            [
                "virtio_mmio",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_blk"
            ]
        );
        // Dashes and underscores are the same module.
        assert_eq!(
            resolve_in(&map, &["virtio-rng"], &BTreeSet::new()).unwrap(),
            ["virtio_rng"]
        );
    }

    #[test]
    fn builtin_modules_are_skipped() {
        let map = parse_modules_dep(DEP).unwrap();
        let builtin =
            parse_builtin("kernel/drivers/virtio/virtio_mmio.ko\nkernel/net/core/failover.ko\n");
        let order = resolve_in(&map, &["virtio_mmio", "virtio_net"], &builtin).unwrap();
        assert_eq!(order, ["net_failover", "virtio_net"]);
    }

    #[test]
    fn missing_module_names_who_needs_it() {
        let map = parse_modules_dep("kernel/a.ko: kernel/gone.ko\n").unwrap();
        let err = resolve_in(&map, &["a"], &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`gone` (needed by `a`)"), "{err}");
        let err = resolve_in(&map, &["virtio_net"], &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`virtio_net` is neither"), "{err}");
    }

    #[test]
    fn cycles_and_bad_lines_are_errors() {
        let map = parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert!(resolve_in(&map, &["a"], &BTreeSet::new())
            .unwrap_err()
            .to_string()
            .contains("cycle"));
        assert!(parse_modules_dep("no colon here")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        assert!(parse_modules_dep("a.txt:\n").is_err());
    }

    #[test]
    fn rendered_modules_dep_lists_transitive_deps() {
        let map = parse_modules_dep(DEP).unwrap();
        let order = resolve(&["virtio_net"], &BTreeSet::new(), |n| {
            Ok(map.get(n).cloned())
        })
        .unwrap();
        let text = render_modules_dep(&order, |m| m.path.trim_end_matches(".xz").to_string());
        assert_eq!(
            text,
            "kernel/net/core/failover.ko:\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n"
        );
        // The rendered file parses back to the same dependencies.
        let back = parse_modules_dep(&text).unwrap();
        assert_eq!(back["virtio_net"].deps, ["net_failover", "failover"]);
    }

    /// A minimal ELF64 LE relocatable with a `.modinfo` section.
    pub fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        let info_off = elf.len();
        elf.extend_from_slice(modinfo);
        let str_off = elf.len();
        elf.extend_from_slice(shstr);
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        for (name, off, size) in [
            (0u32, 0usize, 0usize),
            (1, info_off, modinfo.len()),
            (10, str_off, shstr.len()),
        ] {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&name.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&sh);
        }
        elf
    }

    #[test]
    fn modinfo_depends_are_read() {
        let ko = fake_module(b"license=GPL\0depends=failover,net-failover\0name=virtio_net\0");
        assert_eq!(
            modinfo_depends(&ko, "m").unwrap(),
            ["failover", "net_failover"]
        );
        let none = fake_module(b"depends=\0name=failover\0");
        assert!(modinfo_depends(&none, "m").unwrap().is_empty());
        // Truncated or foreign files are errors, not panics.
        for len in [0, 10, 64, ko.len() - 40] {
            assert!(modinfo_depends(&ko[..len], "m").is_err(), "len {len}");
        }
        let mut wild = ko.clone();
        wild[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(modinfo_depends(&wild, "m").is_err());
    }
}
