//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the migration files at
//! compile time, and without this cargo does not notice a new file in the folder
//! (the build-script sqlx's documentation gives for `migrate!`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
