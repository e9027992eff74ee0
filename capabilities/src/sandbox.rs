//! The operating-system sandbox of `sys.exec.run`.
//!
//! Checking a program's *name* is not enough: the arguments of an
//! allow-listed program can name any file (`cat /proc/<pid>/environ`), write
//! anywhere (`uniq in out`) or start another program (`sort
//! --compress-program=sh`). So the child is confined by the kernel before it
//! executes the program:
//!
//! - **Landlock** (Linux ≥ 5.13): the workspace is the only place it may
//!   read and write (no execution there); the system library and data
//!   directories are read-only; only the allow-listed programs (and the
//!   dynamic loader) may be executed; nothing else on the filesystem is
//!   reachable — not `/proc`, not `/etc/shadow`, not the service's database.
//!   Where the kernel supports it, TCP bind/connect, signals to processes
//!   outside the sandbox and abstract UNIX sockets are denied too.
//! - **seccomp**: system calls a text tool never needs and an escape would
//!   (ptrace, process_vm_*, mount, namespaces, keyrings, BPF, kernel modules,
//!   `open_by_handle_at`, sockets) fail with `EPERM`.
//! - `no_new_privs`, an empty capability bounding set (a root service's child
//!   keeps no capability across `execve`), its own process group (killed as a
//!   whole at the deadline), rlimits on CPU time, address space, file size,
//!   open files and processes, no core dumps, and a cleared environment.
//!
//! If Landlock cannot be established the call fails closed, unless the
//! operator chose `--exec-sandbox none`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// How `sys.exec.run` confines the programs it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SandboxMode {
    /// Landlock + seccomp + rlimits; fail closed when the kernel lacks them.
    #[default]
    Landlock,
    /// No OS sandbox: allow-listed programs run with the service's own
    /// access to files (for hosts without Landlock; logged loudly).
    None,
}

/// Resource ceilings of one sandboxed run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub address_space: u64,
    pub file_size: u64,
    pub open_files: u64,
    pub processes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            address_space: 1 << 30,
            file_size: 64 << 20,
            open_files: 256,
            processes: 64,
        }
    }
}

/// Read-only directories a dynamically linked text tool needs.
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];
/// Single read-only files outside those (name lookups, time zone, loader).
const SYSTEM_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
];
/// Device files a program may read and write.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];
/// Dynamic loaders (executed by the kernel for every dynamic program).
const LOADERS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux-riscv64-lp64d.so.1",
];

/// System calls denied inside the sandbox (`EPERM`): what a text tool never
/// needs and an escape would.
const DENIED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_socket,
    libc::SYS_io_uring_setup,
    libc::SYS_fanotify_init,
    libc::SYS_quotactl,
];

/// Everything the child applies to itself between `fork` and `execve`,
/// prepared in the parent so the child only makes system calls.
#[derive(Debug)]
pub struct Confinement {
    ruleset: OwnedFd,
    filter: BpfProgram,
    limits: Limits,
    cpu_seconds: u64,
}

/// Why a confinement could not be prepared (the call fails closed).
pub fn unavailable(reason: impl std::fmt::Display) -> String {
    format!(
        "the program sandbox cannot be established on this host ({reason}); \
         sys.exec.run is refused (an operator may choose --exec-sandbox none)"
    )
}

impl Confinement {
    /// Prepares the confinement of a run in `workspace` that may execute
    /// `programs` (absolute paths) for at most `timeout` of CPU.
    pub fn prepare(
        workspace: &Path,
        programs: &[PathBuf],
        limits: Limits,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            ruleset: landlock_ruleset(workspace, programs)?,
            filter: seccomp_filter()?,
            limits,
            cpu_seconds: timeout.as_secs().saturating_add(1),
        })
    }

    /// Confines the child of `command` with this preparation when it starts.
    pub fn apply_to(self, command: &mut tokio::process::Command) {
        command.process_group(0);
        // SAFETY: the closure runs in the forked child before `execve`. It
        // makes only async-signal-safe system calls (setrlimit, prctl,
        // landlock_restrict_self, seccomp) on data prepared and owned by the
        // parent, allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || self.confine_child());
        }
    }

    fn confine_child(&self) -> io::Result<()> {
        let limits = [
            (libc::RLIMIT_CPU, self.cpu_seconds),
            (libc::RLIMIT_AS, self.limits.address_space),
            (libc::RLIMIT_FSIZE, self.limits.file_size),
            (libc::RLIMIT_NOFILE, self.limits.open_files),
            (libc::RLIMIT_NPROC, self.limits.processes),
            (libc::RLIMIT_CORE, 0),
        ];
        for (resource, value) in limits {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: a plain system call on a stack value.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: plain prctl calls. Dropping bounding-set capabilities needs
        // CAP_SETPCAP: a service that runs as root has it, one that does not
        // has no capability to lose (EPERM/EINVAL are expected then).
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            for capability in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0);
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let program = libc::sock_fprog {
                len: self.filter.len() as u16,
                filter: self.filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0u32,
                &program as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Kills every process of a sandboxed run's process group.
pub fn kill_group(leader: u32) {
    let Ok(group) = libc::pid_t::try_from(leader) else {
        return;
    };
    // SAFETY: a plain system call; the group was created for this run.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

fn landlock_ruleset(workspace: &Path, programs: &[PathBuf]) -> Result<OwnedFd, String> {
    let fail = |e: &dyn std::fmt::Display| unavailable(format!("Landlock: {e}"));
    let fs_v1 = AccessFs::from_all(ABI::V1);
    let newest = ABI::V6;
    let workspace_access = AccessFs::from_all(newest)
        & !(AccessFs::Execute
            | AccessFs::MakeChar
            | AccessFs::MakeBlock
            | AccessFs::MakeFifo
            | AccessFs::MakeSock
            | AccessFs::MakeSym
            | AccessFs::IoctlDev);
    let read_dir = AccessFs::ReadFile | AccessFs::ReadDir;
    let ruleset = Ruleset::default()
        // The filesystem rules of the first ABI are what the sandbox stands
        // on: without them, fail closed.
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(fs_v1)
        .map_err(|e| fail(&e))?
        // Newer rights (truncate, refer, network, scopes) when the kernel has them.
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(newest))
        .and_then(|r| r.handle_access(AccessNet::from_all(newest)))
        .and_then(|r| r.scope(Scope::from_all(newest)))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?;
    let mut ruleset = ruleset
        .set_compatibility(CompatLevel::HardRequirement)
        .add_rule(PathBeneath::new(
            PathFd::new(workspace).map_err(|e| fail(&e))?,
            workspace_access,
        ))
        .map_err(|e| fail(&e))?
        .set_compatibility(CompatLevel::BestEffort);
    let existing = |paths: &'static [&'static str]| {
        paths
            .iter()
            .map(Path::new)
            .filter(|p| p.exists())
            .collect::<Vec<_>>()
    };
    let file_read = AccessFs::ReadFile.into();
    let device = AccessFs::ReadFile | AccessFs::WriteFile;
    let execute = AccessFs::Execute | AccessFs::ReadFile;
    let mut rules: Vec<(PathBuf, landlock::BitFlags<AccessFs>)> = Vec::new();
    rules.extend(
        existing(SYSTEM_DIRS)
            .into_iter()
            .map(|p| (p.into(), read_dir)),
    );
    rules.extend(
        existing(SYSTEM_FILES)
            .into_iter()
            .map(|p| (p.into(), file_read)),
    );
    rules.extend(existing(DEVICES).into_iter().map(|p| (p.into(), device)));
    rules.extend(existing(LOADERS).into_iter().map(|p| (p.into(), execute)));
    rules.extend(programs.iter().map(|p| (p.clone(), execute)));
    for (path, access) in rules {
        let fd = PathFd::new(&path).map_err(|e| fail(&format!("{}: {e}", path.display())))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&e))?;
    }
    Option::<OwnedFd>::from(ruleset).ok_or_else(|| fail(&"the kernel does not support it"))
}

fn seccomp_filter() -> Result<BpfProgram, String> {
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else if cfg!(target_arch = "riscv64") {
        TargetArch::riscv64
    } else {
        return Err(unavailable("seccomp: unsupported architecture"));
    };
    let rules = DENIED_SYSCALLS.iter().map(|&nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| unavailable(format!("seccomp: {e}")))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| unavailable(format!("seccomp: {e}")))
}
