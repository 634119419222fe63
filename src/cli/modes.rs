//! The delivery modes as clap values, shared by `peer`, `lab` and `c2 run`: the one-line help
//! of each mode lives here, so the three explain the modes in the same words. The library's
//! `Order` and `Repair` know nothing of clap; these wrappers carry them through parsing.

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::lab::OrderChoice;
use crate::wire::{Order, Repair};

/// `--order MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderArg(pub Order);

/// `--repair nack|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairArg(pub Repair);

/// `--order MODE|all` (lab, c2 run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderChoiceArg(pub OrderChoice);

const ORDERS: [OrderArg; 5] = [
    OrderArg(Order::None),
    OrderArg(Order::Fifo),
    OrderArg(Order::Causal),
    OrderArg(Order::Sequencer),
    OrderArg(Order::Lamport),
];

const CHOICES: [OrderChoiceArg; 6] = [
    OrderChoiceArg(OrderChoice::One(Order::None)),
    OrderChoiceArg(OrderChoice::One(Order::Fifo)),
    OrderChoiceArg(OrderChoice::One(Order::Causal)),
    OrderChoiceArg(OrderChoice::One(Order::Sequencer)),
    OrderChoiceArg(OrderChoice::One(Order::Lamport)),
    OrderChoiceArg(OrderChoice::All),
];

fn order_help(o: Order) -> &'static str {
    match o {
        Order::None => "deliver on arrival: the original experiment, which shows the problem",
        Order::Fifo => "each sender's messages in the order it sent them (per-sender sequence)",
        Order::Causal => "after every message that causally precedes it (vector clocks)",
        Order::Sequencer => "one total order for all, fixed by peer 0 (the sequencer)",
        Order::Lamport => "one total order for all by (Lamport time, sender), no coordinator",
    }
}

impl ValueEnum for OrderArg {
    fn value_variants<'a>() -> &'a [Self] {
        &ORDERS
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()).help(order_help(self.0)))
    }
}

impl ValueEnum for RepairArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[RepairArg(Repair::Nack), RepairArg(Repair::Off)]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self.0 {
            Repair::Nack => PossibleValue::new("nack").help(
                "a receiver that sees a gap asks the sender (NACK), which retransmits what it kept",
            ),
            Repair::Off => PossibleValue::new("off")
                .alias("none")
                .help("no retransmission: a lost message stays lost (the comparator counts it)"),
        })
    }
}

impl ValueEnum for OrderChoiceArg {
    fn value_variants<'a>() -> &'a [Self] {
        &CHOICES
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self.0 {
            OrderChoice::One(o) => OrderArg(o).to_possible_value(),
            OrderChoice::All => Some(
                PossibleValue::new("all")
                    .help("every mode above in turn, on the same seeds, then one table"),
            ),
        }
    }
}

/// `--transport fanout|multicast|both` of `lab` and `bench` (their text: `both` or a
/// transport, as `wire::Transport` parses it).
pub fn parse_transport_choice(s: &str) -> Result<crate::lab::TransportChoice, String> {
    use crate::lab::TransportChoice;
    if s == "both" {
        Ok(TransportChoice::Both)
    } else {
        s.parse()
            .map(TransportChoice::One)
            .map_err(|e| format!("{e}, or both"))
    }
}
