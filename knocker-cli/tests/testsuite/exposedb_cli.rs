//! Snapshots of `knocker exposedb` help and of each error class that is
//! caught before any server is contacted (tests/cmd/exposedb/*.toml).

#[test]
fn exposedb_cli_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/exposedb/*.toml");
}
