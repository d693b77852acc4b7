#!/usr/bin/perl
# Verify every DKIM signature of the message on stdin with Perl's Mail::DKIM.
# Arguments: NAME=TXT pairs, the DNS records to answer with (no network is used).
# Prints one line per signature: "RESULT ALGORITHM SELECTOR DETAIL"; exits 0.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS;

my %records = map { my ($name, $txt) = split /=/, $_, 2; (lc $name, $txt) } @ARGV;
{
    no warnings 'redefine';
    *Mail::DKIM::DNS::query = sub {
        my ($domain, $type) = @_;
        my $txt = $records{ lc $domain };
        return () unless defined $txt && $type eq 'TXT';
        # TXT strings are at most 255 characters each.
        my @strings = unpack '(A255)*', $txt;
        return (Net::DNS::RR->new(name => $domain, type => 'TXT', txtdata => [@strings]));
    };
}

my $verifier = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    # Mail::DKIM wants CRLF line ends, as on the wire.
    $line =~ s/\r?\n\z/\015\012/;
    $verifier->PRINT($line);
}
$verifier->CLOSE;
for my $signature ($verifier->signatures) {
    printf "%s %s %s %s\n", $signature->result, $signature->algorithm,
        $signature->selector, ($signature->result_detail // '');
}
