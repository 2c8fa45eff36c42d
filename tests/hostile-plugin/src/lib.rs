//! A hostile numafit policy. What it does is chosen by guest cell 0's memory in the request:
//! 1 MiB loops forever, 2 MiB allocates without end, 3 MiB panics, 4 MiB returns a placement that
//! pins one host CPU for every vCPU, 6 MiB reads just past the end of its linear memory and 7 MiB
//! writes there (both must trap, not reach the host's memory), anything else refuses politely. Its claim inflates the host's
//! memory (a capacity change the host must catch).

mod bindings {
    wit_bindgen::generate!({ world: "placement-policy", path: "../../wit/0.1.0", pub_export_macro: true });
}

use bindings::*;

struct Hostile;

bindings::export!(Hostile with_types_in bindings);

impl Guest for Hostile {
    fn info() -> PluginInfo {
        PluginInfo { name: "hostile".into(), version: "0".into(), contract: "0.1.0".into() }
    }

    fn request_from_flavor(_: Flavor) -> Result<Request, RequestError> {
        Err(RequestError { code: "Hostile".into(), message: "no".into() })
    }

    fn fit(host: Host, request: Request, _: Limits) -> Result<Placement, Rejection> {
        match request.cells.first().map(|c| c.memory_mb) {
            Some(1) => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some(2) => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some(3) => panic!("hostile plugin panics on purpose"),
            Some(4) => {
                let pcpu = host.cpus.ids.first().copied().unwrap_or(0);
                let cell = host.cells.first().map(|c| c.id).unwrap_or(0);
                let dedicated: Vec<u32> = request.vcpus.iter().filter(|v| v.cell == 0 && v.dedicated).map(|v| v.id).collect();
                let shared: Vec<u32> = request.vcpus.iter().filter(|v| v.cell == 0 && !v.dedicated).map(|v| v.id).collect();
                Ok(Placement {
                    policy: "hostile".into(),
                    cpu_policy: request.cpu_policy,
                    thread_policy: request.thread_policy,
                    emulator_threads: request.emulator_threads,
                    cells: vec![PlacedCell {
                        guest_cell: 0,
                        host_cell: cell,
                        pinning: dedicated.iter().map(|&vcpu| PinnedVcpu { vcpu, pcpu }).collect(),
                        shared_vcpus: shared,
                        dedicated_vcpus: dedicated,
                        memory_mb: 4,
                        page_size_kb: None,
                        emulator_pcpus: vec![],
                    }],
                })
            }
            Some(6) => {
                let past_end = core::arch::wasm32::memory_size(0) * 65536 + 8;
                // SAFETY: none; reaching past linear memory is this plugin's purpose.
                let byte = unsafe { core::ptr::read_volatile(past_end as *const u8) };
                Err(Rejection { summary: format!("read {byte} past the end"), refusals: vec![], reasons: vec![] })
            }
            Some(7) => {
                let past_end = core::arch::wasm32::memory_size(0) * 65536 + 8;
                // SAFETY: none; reaching past linear memory is this plugin's purpose.
                unsafe { core::ptr::write_volatile(past_end as *mut u8, 0x5a) };
                Err(Rejection { summary: "wrote past the end".into(), refusals: vec![], reasons: vec![] })
            }
            _ => Err(Rejection { summary: "hostile plugin refuses".into(), refusals: vec![], reasons: vec![] }),
        }
    }

    fn fit_many(hosts: Vec<Host>, request: Request, limits: Limits) -> Vec<Result<Placement, Rejection>> {
        hosts.into_iter().map(|h| Self::fit(h, request.clone(), limits.clone())).collect()
    }

    fn claim(mut host: Host, _: Placement) -> Result<Host, AccountingError> {
        for cell in &mut host.cells {
            cell.memory_mb *= 2;
        }
        Ok(host)
    }

    fn release(host: Host, _: Placement) -> Result<Host, AccountingError> {
        Ok(host)
    }
}
