//! Each export does the least its shape allows, so a call's time is the boundary's.

wit_bindgen::generate!({ path: "wit", world: "boundary" });

use exports::numafit::boundary::shapes::{Guest, GuestThing, ThingBorrow};

struct Shapes;

struct Thing(u32);

impl GuestThing for Thing {
    fn new() -> Thing {
        Thing(7)
    }
}

fn read(t: &ThingBorrow<'_>) -> u32 {
    t.get::<Thing>().0
}

impl Guest for Shapes {
    type Thing = Thing;

    fn scalar(a: u32, b: u32) -> u64 {
        u64::from(a) << 32 | u64::from(b)
    }

    fn borrows(a: ThingBorrow<'_>, b: ThingBorrow<'_>) -> u64 {
        u64::from(read(&a)) + u64::from(read(&b))
    }

    fn words(a: u32, b: u32) -> Vec<u32> {
        vec![1, a, b, 3, 4, 5, 6, 7]
    }

    fn packed_shape(a: ThingBorrow<'_>, b: ThingBorrow<'_>) -> Result<Vec<u32>, String> {
        Ok(vec![1, read(&a), read(&b), 3, 4, 5, 6, 7])
    }

    fn info_shape() -> (String, String, String) {
        ("nova".into(), "0.1.0".into(), "0.5.0".into())
    }
}

export!(Shapes);
