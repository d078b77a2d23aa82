"""A small authoritative DNS responder on loopback (UDP) for domain-verification tests.

`records[(name, type)] = [values]`; a name with no records at all answers NXDOMAIN, a name with
records of other types answers NOERROR with no answer."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest


class DnsServer:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, str]] = []
        self.silent = False
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def set(self, name: str, rdtype: str, *values: str) -> None:
        key = (name.rstrip(".").lower(), rdtype)
        if values:
            self.records[key] = list(values)
        else:
            self.records.pop(key, None)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, address = self.sock.recvfrom(4096)
            except OSError:
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001
                continue
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values))
            elif not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), address)

    def start(self) -> DnsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def dns_server(settings):
    server = DnsServer().start()
    settings.DNS_NAMESERVERS = ["127.0.0.1"]
    settings.DNS_PORT = server.port
    yield server
    server.stop()
