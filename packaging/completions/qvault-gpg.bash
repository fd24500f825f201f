# bash completion for qvault-gpg(1), the gpg-compatible qvault client.
# Completes the options qvault-gpg implements; key arguments complete from the
# vault's key list only when the vault is reachable and answers quickly.

_qvault_gpg() {
    local cur prev
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}

    case $prev in
        -u|--local-user|--default-key)
            local keys
            keys=$(timeout 5 qvault-gpg --batch --with-colons --list-secret-keys 2>/dev/null |
                awk -F: '$1 == "fpr" { print $10 }')
            COMPREPLY=($(compgen -W "$keys" -- "$cur"))
            return
            ;;
        -o|--output|--receipt-out|--proof-out)
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        --digest-algo|--personal-digest-preferences)
            COMPREPLY=($(compgen -W "SHA256 SHA384 SHA512 SHA224" -- "$cur"))
            return
            ;;
        --keyid-format)
            COMPREPLY=($(compgen -W "none short long 0xshort 0xlong" -- "$cur"))
            return
            ;;
        --status-fd)
            COMPREPLY=($(compgen -W "1 2" -- "$cur"))
            return
            ;;
    esac

    if [[ $cur == -* ]]; then
        local opts="--sign --detach-sign --clearsign --clear-sign --verify
            --list-keys --list-public-keys --list-secret-keys --fingerprint
            --export --import --version --help --armor --no-armor --textmode
            --no-textmode --local-user --default-key --output --yes --status-fd
            --digest-algo --personal-digest-preferences --keyid-format
            --with-colons --with-fingerprint --with-subkey-fingerprint --quiet
            --verbose --receipt-out --proof-out --batch --no-tty
            -s -b -a -t -u -o -k -K -q -v -h"
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}

complete -o filenames -o bashdefault -F _qvault_gpg qvault-gpg
