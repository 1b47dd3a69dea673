# Build and install keygate like a system package.
#
#   make                                  release build, manual pages, shell completions
#   make install [PREFIX=/usr] [DESTDIR=] the module, its p11-kit registration, the program,
#                                         manual pages, completions, an example configuration
#   make uninstall [PREFIX=/usr]          removes what install put there
#   make deb                              target/debian/keygate_VERSION_ARCH.deb (dpkg-deb)
#
# ci/install builds the Debian package and installs it with apt (the README's install command).

PREFIX     ?= /usr
DESTDIR    ?=
MULTIARCH  ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
LIBDIR     ?= $(PREFIX)/lib/$(MULTIARCH)
PKCS11DIR  ?= $(LIBDIR)/pkcs11
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share
DOCDIR     ?= $(DATADIR)/doc/keygate
P11KITDIR  ?= $(DATADIR)/p11-kit/modules
# The module reads /etc/keygate/keygate.toml whatever the prefix.
SYSCONFDIR ?= /etc
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH       := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)

OUT        := target/release
GEN        := target/package

.PHONY: all build install uninstall deb

all: build $(GEN)/stamp

# cargo decides what to rebuild.
build:
	cargo build --release --locked

# Manual pages (keygate.1, keygate-SUBCOMMAND.1 from the program's own definitions, and the
# hand-written keygate.toml.5) and completion scripts.
$(GEN)/stamp: build docs/keygate.toml.5 packaging/keygate.module
	rm -rf $(GEN) && mkdir -p $(GEN)/man1 $(GEN)/man5 $(GEN)/completions
	$(OUT)/keygate man --dir $(GEN)/man1 >/dev/null
	cp docs/keygate.toml.5 $(GEN)/man5/
	gzip -9n $(GEN)/man1/*.1 $(GEN)/man5/*.5
	$(OUT)/keygate completions bash > $(GEN)/completions/keygate
	$(OUT)/keygate completions zsh > $(GEN)/completions/_keygate
	$(OUT)/keygate completions fish > $(GEN)/completions/keygate.fish
	sed 's|@MODULE@|$(PKCS11DIR)/libkeygate_pkcs11.so|' packaging/keygate.module > $(GEN)/keygate.module
	touch $@

install: all
	install -D -m 0644 $(OUT)/libkeygate_pkcs11.so $(DESTDIR)$(PKCS11DIR)/libkeygate_pkcs11.so
	install -D -m 0644 $(GEN)/keygate.module $(DESTDIR)$(P11KITDIR)/keygate.module
	install -D -m 0755 $(OUT)/keygate $(DESTDIR)$(BINDIR)/keygate
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 0644 $(GEN)/man1/*.1.gz $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(GEN)/man5/keygate.toml.5.gz $(DESTDIR)$(MANDIR)/man5/
	install -D -m 0644 $(GEN)/completions/keygate $(DESTDIR)$(DATADIR)/bash-completion/completions/keygate
	install -D -m 0644 $(GEN)/completions/_keygate $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_keygate
	install -D -m 0644 $(GEN)/completions/keygate.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/keygate.fish
	install -D -m 0644 examples/keygate.toml $(DESTDIR)$(DOCDIR)/examples/keygate.toml
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -D -m 0644 SECURITY.md $(DESTDIR)$(DOCDIR)/SECURITY.md
	install -D -m 0644 include/keygate.h $(DESTDIR)$(PREFIX)/include/keygate.h
	@# A configuration with no token, so that p11-kit's clients load the module quietly; an
	@# existing one is kept.
	[ -e $(DESTDIR)$(SYSCONFDIR)/keygate/keygate.toml ] || \
	    install -D -m 0644 packaging/keygate.toml $(DESTDIR)$(SYSCONFDIR)/keygate/keygate.toml

# Leaves $(SYSCONFDIR)/keygate, which holds the operator's configuration.
uninstall:
	rm -f $(DESTDIR)$(PKCS11DIR)/libkeygate_pkcs11.so $(DESTDIR)$(P11KITDIR)/keygate.module \
	      $(DESTDIR)$(BINDIR)/keygate $(DESTDIR)$(MANDIR)/man1/keygate.1.gz \
	      $(DESTDIR)$(MANDIR)/man1/keygate-*.1.gz $(DESTDIR)$(MANDIR)/man5/keygate.toml.5.gz \
	      $(DESTDIR)$(DATADIR)/bash-completion/completions/keygate \
	      $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_keygate \
	      $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/keygate.fish \
	      $(DESTDIR)$(PREFIX)/include/keygate.h
	rm -rf $(DESTDIR)$(DOCDIR)

# A Debian package of `make install PREFIX=/usr`, built with dpkg-deb (no extra tool).
deb: all
	rm -rf target/debian/root && mkdir -p target/debian/root/DEBIAN
	$(MAKE) -s --no-print-directory install PREFIX=/usr DESTDIR=$(CURDIR)/target/debian/root
	echo /etc/keygate/keygate.toml > target/debian/root/DEBIAN/conffiles
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@ARCH@|$(ARCH)|' \
	    -e "s|@SIZE@|$$(du -sk target/debian/root | cut -f1)|" packaging/control.in > target/debian/root/DEBIAN/control
	dpkg-deb --root-owner-group --build target/debian/root target/debian/keygate_$(VERSION)_$(ARCH).deb
