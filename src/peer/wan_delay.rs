//! The emulated WAN as the peer uses it: a profile, the zone of every peer, a time scale.

use super::machine::DelayModel;
use crate::wan::{Link, Profile};

#[derive(Debug, Clone)]
pub struct WanPlan {
    pub profile: Profile,
    /// Zone index (in `profile.zones`) of every peer id.
    pub zones: Vec<usize>,
    pub time_scale: f64,
    pub extra_loss: f64,
}

impl WanPlan {
    /// Zones by name (one per peer), or round-robin over the profile's zones when empty.
    pub fn new(
        profile: Profile,
        peers: usize,
        zones: &[String],
        time_scale: f64,
        extra_loss: f64,
    ) -> anyhow::Result<WanPlan> {
        let zones = if zones.is_empty() {
            profile.round_robin(peers)
        } else {
            anyhow::ensure!(
                zones.len() == peers,
                "--zones lists {} zones for {peers} peers: give one per peer, in --peers order",
                zones.len()
            );
            zones
                .iter()
                .map(|z| {
                    profile.zone_index(z).ok_or_else(|| {
                        anyhow::anyhow!(
                            "zone {z:?} is not in profile {} (zones: {})",
                            profile.name,
                            profile.zones.join(" ")
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        Ok(WanPlan {
            profile,
            zones,
            time_scale,
            extra_loss,
        })
    }

    pub fn zone_name(&self, id: u16) -> String {
        self.profile.zones[self.zones[usize::from(id)]].clone()
    }

    /// The delay model for peer `me`, seeded so that runs with the same seed repeat.
    pub fn delay_model(&self, me: u16, seed: u64) -> Box<dyn DelayModel> {
        let seed = seed ^ 0x5741_4e00_0000_0000 ^ u64::from(me);
        Box::new(ZoneDelay {
            link: Link::new(&self.profile, seed, self.time_scale, self.extra_loss),
            zones: self.zones.clone(),
        })
    }
}

struct ZoneDelay {
    link: Link,
    zones: Vec<usize>,
}

impl DelayModel for ZoneDelay {
    fn delay(&mut self, from: u16, to: u16) -> Option<std::time::Duration> {
        self.link
            .delay(self.zones[usize::from(from)], self.zones[usize::from(to)])
    }

    fn max_delay(&self) -> std::time::Duration {
        self.link.max_delay()
    }
}
