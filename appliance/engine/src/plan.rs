//! The core plan: which core runs which role. Every long-lived engine thread is started through
//! [`CorePlan::spawn`], pinned to the core its role was given.

use std::fmt;
use std::thread::JoinHandle;

use core_affinity::CoreId;

/// The roles an engine thread can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// RTMP (and later SRT, RTSP) sockets and their protocol sessions.
    Ingest,
    /// The stream hub: packaging and publishing into the segment store.
    Package,
    /// Encoding: the demo source and the first transcode worker (further workers are
    /// placed by [`CorePlan::transcode`]).
    Transcode,
    /// The control API.
    Control,
}

/// Which core each role runs on. `None` means "not pinned" (the OS could not list its cores).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorePlan {
    pub ingest: Option<CoreId>,
    pub package: Option<CoreId>,
    /// One transcode worker (thread) per entry; the demo source runs on the first.
    pub transcode: Vec<Option<CoreId>>,
    pub control: Option<CoreId>,
    /// One delivery worker (thread + ring) per entry.
    pub delivery: Vec<Option<CoreId>>,
}

impl CorePlan {
    /// A plan for the cores this process may run on. `delivery_workers` overrides how many
    /// delivery workers run (by default one per delivery core).
    ///
    /// Delivery gets every core on small boxes because each worker's ring holds at most
    /// RLIMIT_NOFILE connections (shared/research/uring.md): two rings are what lets a 2-core
    /// box hold 30,000 viewers. Ingest, packaging and control are light and share core 0;
    /// transcoding moves to a core of its own from 3 cores up.
    ///
    /// `transcode_workers`: `None` when transcoding is off (one transcode thread slot, for the
    /// demo source); `Some(0)` for the automatic count (one up to 3 cores; from 4 cores, half
    /// of the cores after core 0, which then belong to transcoding alone and leave delivery
    /// the rest); `Some(n)` for exactly `n` workers.
    pub fn automatic(
        delivery_workers: Option<usize>,
        transcode_workers: Option<usize>,
    ) -> CorePlan {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        Self::for_cores(&cores, delivery_workers, transcode_workers)
    }

    /// The plan for a given list of cores (separate from [`Self::automatic`] for tests).
    pub fn for_cores(
        cores: &[CoreId],
        delivery_workers: Option<usize>,
        transcode_workers: Option<usize>,
    ) -> CorePlan {
        let at = |i: usize| cores.get(i).copied();
        let n = cores.len();
        let workers = match transcode_workers {
            None => 1,
            Some(0) if n >= 4 => (n - 1) / 2,
            Some(0) => 1,
            Some(count) => count,
        };
        // From 4 cores up, more than one worker gets cores of its own (at most all but one
        // after core 0, so delivery keeps a core).
        let own_cores = if n >= 4 && workers > 1 {
            workers.min(n - 2)
        } else {
            0
        };
        let (control, ingest, package) = match n {
            0..=3 => (at(0), at(0), at(0)),
            _ if own_cores > 0 => (at(0), at(0), at(0)),
            _ => (at(0), at(0), at(1)),
        };
        let transcode_cores: Vec<Option<CoreId>> = match n {
            0 => vec![None],
            1 | 2 => cores.iter().copied().map(Some).collect(),
            3 => vec![at(1)],
            _ if own_cores > 0 => cores[1..1 + own_cores].iter().copied().map(Some).collect(),
            _ => vec![at(1)],
        };
        // Up to 2 cores a single worker shares core 0 with ingest and packaging.
        let transcode: Vec<Option<CoreId>> = (0..workers)
            .map(|i| transcode_cores[i % transcode_cores.len()])
            .collect();
        let delivery_cores: Vec<Option<CoreId>> = match n {
            0 => vec![None],
            1 | 2 => cores.iter().copied().map(Some).collect(),
            3 => vec![at(1), at(2)],
            _ => cores[2 + own_cores.saturating_sub(1)..]
                .iter()
                .copied()
                .map(Some)
                .collect(),
        };
        let delivery = match delivery_workers {
            Some(count) if count > 0 => (0..count)
                .map(|i| delivery_cores[i % delivery_cores.len()])
                .collect(),
            _ => delivery_cores,
        };
        CorePlan {
            ingest,
            package,
            transcode,
            control,
            delivery,
        }
    }

    pub fn core_of(&self, role: Role) -> Option<CoreId> {
        match role {
            Role::Ingest => self.ingest,
            Role::Package => self.package,
            Role::Transcode => self.transcode.first().copied().flatten(),
            Role::Control => self.control,
        }
    }

    /// Starts a named thread pinned to the core of `role`.
    pub fn spawn<F, T>(&self, role: Role, name: &str, body: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let core = self.core_of(role);
        spawn_pinned(name, core, body)
    }
}

/// Starts a named thread pinned to `core` (when given).
pub fn spawn_pinned<F, T>(
    name: &str,
    core: Option<CoreId>,
    body: F,
) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(
                    core = core.id,
                    "could not pin thread to its core; running unpinned"
                );
            }
            body()
        })
}

/// Runs `f` on the calling thread pinned to `core`, then gives the thread its CPU mask back.
///
/// For work that starts library threads on behalf of a thread elsewhere: x264, x265, SVT-AV1
/// and libavcodec's frame threads start their threads when an encoder or decoder opens, and a
/// new thread inherits the CPU mask of the thread that starts it. The hub opens a stream's
/// ladder (it needs the rungs' parameter sets at once), so without this every encoder thread
/// would run on the hub's package core instead of the transcode core of the worker that runs
/// the ladder. `None` runs `f` as it is.
pub fn with_threads_on<T>(core: Option<CoreId>, f: impl FnOnce() -> T) -> T {
    let Some(core) = core else {
        return f();
    };
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `saved` is a cpu_set_t of `size` bytes that we own; pid 0 is this thread.
    let have_saved = unsafe { libc::sched_getaffinity(0, size, &mut saved) } == 0;
    if !core_affinity::set_for_current(core) {
        tracing::warn!(
            core = core.id,
            "could not pin to the transcode core while opening encoders"
        );
    }
    let result = f();
    // SAFETY: `saved` holds the mask read above, `size` bytes; pid 0 is this thread.
    if have_saved && unsafe { libc::sched_setaffinity(0, size, &saved) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not restore this thread's CPU mask"
        );
    }
    result
}

fn core_name(core: Option<CoreId>) -> String {
    core.map_or_else(|| "any".to_owned(), |c| c.id.to_string())
}

impl fmt::Display for CorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delivery: Vec<String> = self.delivery.iter().map(|c| core_name(*c)).collect();
        let transcode: Vec<String> = self.transcode.iter().map(|c| core_name(*c)).collect();
        write!(
            f,
            "ingest=core {} package=core {} transcode=cores [{}] control=core {} delivery=cores [{}]",
            core_name(self.ingest),
            core_name(self.package),
            transcode.join(", "),
            core_name(self.control),
            delivery.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(n: usize) -> Vec<CoreId> {
        (0..n).map(|id| CoreId { id }).collect()
    }

    /// The CPU list of a thread, as /proc says it.
    fn allowed_cpus(tid: libc::pid_t) -> String {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
            .expect("thread status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim()
            .to_owned()
    }

    fn this_thread() -> libc::pid_t {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }

    #[test]
    fn threads_started_inside_run_on_the_given_core_and_the_caller_gets_its_mask_back() {
        let caller = this_thread();
        let before = allowed_cpus(caller);
        let (inside, child) = with_threads_on(Some(CoreId { id: 0 }), || {
            let child = std::thread::spawn(|| allowed_cpus(this_thread()))
                .join()
                .expect("child thread");
            (allowed_cpus(this_thread()), child)
        });
        assert_eq!(inside, "0");
        assert_eq!(child, "0", "a thread started inside inherits the core");
        assert_eq!(allowed_cpus(caller), before, "mask restored");
        assert_eq!(with_threads_on(None, || 7), 7);
    }

    #[test]
    fn two_cores_deliver_on_both_and_share_core_zero() {
        let plan = CorePlan::for_cores(&cores(2), None, None);
        assert_eq!(
            plan.delivery,
            vec![Some(CoreId { id: 0 }), Some(CoreId { id: 1 })]
        );
        assert_eq!(plan.ingest, Some(CoreId { id: 0 }));
        assert_eq!(plan.transcode, vec![Some(CoreId { id: 0 })]);
    }

    #[test]
    fn eight_cores_keep_delivery_apart() {
        let plan = CorePlan::for_cores(&cores(8), None, None);
        assert_eq!(plan.delivery.len(), 6);
        assert!(!plan.delivery.contains(&Some(CoreId { id: 0 })));
        assert_eq!(plan.transcode, vec![Some(CoreId { id: 1 })]);
    }

    fn ids(list: &[Option<CoreId>]) -> Vec<usize> {
        list.iter().map(|c| c.map_or(99, |c| c.id)).collect()
    }

    #[test]
    fn transcoding_gets_half_the_cores_after_core_zero_from_four_up() {
        let plan = CorePlan::for_cores(&cores(8), None, Some(0));
        assert_eq!(ids(&plan.transcode), vec![1, 2, 3]);
        assert_eq!(ids(&plan.delivery), vec![4, 5, 6, 7]);
        assert_eq!(plan.package, Some(CoreId { id: 0 }));
        let plan = CorePlan::for_cores(&cores(16), None, Some(0));
        assert_eq!(plan.transcode.len(), 7);
        assert_eq!(ids(&plan.delivery), (8..16).collect::<Vec<_>>());
        // Every core has exactly one of the heavy roles.
        let plan = CorePlan::for_cores(&cores(4), None, Some(0));
        assert_eq!(
            (ids(&plan.transcode), ids(&plan.delivery)),
            (vec![1], vec![2, 3])
        );
    }

    #[test]
    fn asked_for_workers_keep_one_delivery_core_and_share_small_boxes() {
        let plan = CorePlan::for_cores(&cores(4), None, Some(5));
        assert_eq!(ids(&plan.transcode), vec![1, 2, 1, 2, 1]);
        assert_eq!(ids(&plan.delivery), vec![3]);
        let plan = CorePlan::for_cores(&cores(2), None, Some(2));
        assert_eq!(ids(&plan.transcode), vec![0, 1]);
        assert_eq!(ids(&plan.delivery), vec![0, 1]);
        let plan = CorePlan::for_cores(&cores(2), None, Some(0));
        assert_eq!(ids(&plan.transcode), vec![0]);
        assert!(plan.to_string().contains("transcode=cores [0]"), "{plan}");
    }

    #[test]
    fn worker_count_override_wraps_over_delivery_cores() {
        let plan = CorePlan::for_cores(&cores(2), Some(3), None);
        let ids: Vec<usize> = plan
            .delivery
            .iter()
            .map(|c| c.map_or(99, |c| c.id))
            .collect();
        assert_eq!(ids, vec![0, 1, 0]);
        let unknown = CorePlan::for_cores(&[], None, None);
        assert_eq!(unknown.delivery, vec![None]);
        assert!(unknown.to_string().contains("delivery=cores [any]"));
    }
}
