"""Builds tests/data/geoip-test.mmdb, the small MaxMind-format database the GeoIP test
reads. The file is committed; run this only to change it:

    pip install mmdb-writer==0.2.7 && python3 tests/data/make_geoip_test_mmdb.py

It holds both record shapes kurz accepts, on documentation-only address ranges:
  203.0.113.0/24   {"country_code": "NZ"}                     (ip-location-db style)
  198.51.100.0/24  {"country": {"iso_code": "JP"},
                    "city": {"names": {"en": "Osaka"}}}       (GeoIP2-City style)
  2001:db8::/32    {"country_code": "CH"}
"""
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

writer = MMDBWriter(ip_version=6, database_type="kurz-test", ipv4_compatible=True)
writer.insert_network(IPSet(["203.0.113.0/24"]), {"country_code": "NZ"})
writer.insert_network(
    IPSet(["198.51.100.0/24"]),
    {"country": {"iso_code": "JP"}, "city": {"names": {"en": "Osaka"}}},
)
writer.insert_network(IPSet(["2001:db8::/32"]), {"country_code": "CH"})
writer.to_db_file(str(Path(__file__).with_name("geoip-test.mmdb")))
