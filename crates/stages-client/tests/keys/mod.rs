//! Stages keys from literals the tests know to be good.

#![allow(dead_code)]

use domain::stages::{DeviceId, SiteNo, TransmitterCode};

pub fn site_no(text: &str) -> SiteNo {
    SiteNo::parse(text).unwrap()
}

pub fn device_id(text: &str) -> DeviceId {
    DeviceId::parse(text).unwrap()
}

pub fn xmit(text: &str) -> TransmitterCode {
    TransmitterCode::parse(text).unwrap()
}
